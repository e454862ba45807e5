/**
 * Coalesces the requests of concurrent jobs into batches, DataLoader style: requests made in the
 * same tick go out together as one call of `run`, and requests made while that call is in flight
 * go out together as the next one (one call in flight at a time, at most `maxBatch` requests per
 * call). `run` gets the requests in order and answers one result per request, in the same order;
 * each request's promise settles as soon as its own batch returns.
 *
 * Requests with the same `keyOf` never share a batch (a later one waits for the next), so a
 * set-based statement never sees one row twice. When a batch of several requests fails with an
 * error that one request's data can cause (`retryAlone`, e.g. a constraint or data error), each is
 * tried again alone, so a bad request fails only its own caller; any other error (the database
 * away, a timeout) fails every request of the batch at once.
 */
export interface CoalescerOptions<In> {
  /** Largest number of requests per call of `run`. */
  readonly maxBatch: number;
  /** Requests with the same key go in different batches (default: no key, any may share). */
  readonly keyOf?: (request: In) => string;
  /**
   * True for a batch's error that one bad request can cause: then each is retried alone
   * (default: never; the batch's callers all get the error).
   */
  readonly retryAlone?: (error: unknown) => boolean;
}

interface Waiting<In, Out> {
  readonly request: In;
  readonly resolve: (out: Out) => void;
  readonly reject: (error: unknown) => void;
}

export class Coalescer<In, Out> {
  private queue: Waiting<In, Out>[] = [];
  private scheduled = false;
  private inFlight = false;

  constructor(
    private readonly run: (requests: readonly In[]) => Promise<readonly Out[]>,
    private readonly options: CoalescerOptions<In>,
  ) {
    if (!(options.maxBatch >= 1)) throw new Error('maxBatch must be at least 1');
  }

  /** Queues one request; resolves with its result once its batch has run. */
  load(request: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // After the current tick's promise jobs: every request made in this tick joins the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private take(): Waiting<In, Out>[] {
    const batch: Waiting<In, Out>[] = [];
    const keys = new Set<string>();
    const rest: Waiting<In, Out>[] = [];
    for (const w of this.queue) {
      const key = this.options.keyOf?.(w.request);
      if (batch.length < this.options.maxBatch && (key === undefined || !keys.has(key))) {
        if (key !== undefined) keys.add(key);
        batch.push(w);
      } else rest.push(w);
    }
    this.queue = rest;
    return batch;
  }

  private async flush(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const batch = this.take();
      if (batch.length > 0) await this.runBatch(batch);
    } finally {
      this.inFlight = false;
      this.schedule();
    }
  }

  private async runBatch(batch: readonly Waiting<In, Out>[]): Promise<void> {
    let results: readonly Out[];
    try {
      results = await this.run(batch.map((w) => w.request));
      if (results.length !== batch.length) {
        throw new Error(`batch answered ${results.length} results for ${batch.length} requests`);
      }
    } catch (error) {
      if (batch.length > 1 && this.options.retryAlone?.(error) === true) {
        await Promise.all(batch.map((w) => this.runBatch([w])));
      } else {
        for (const w of batch) w.reject(error);
      }
      return;
    }
    batch.forEach((w, i) => w.resolve(results[i] as Out));
  }
}
