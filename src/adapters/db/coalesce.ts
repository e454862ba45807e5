/**
 * Coalesces single-row requests into batches (DataLoader's idea, for writes as well as reads):
 * requests made in the same turn of the event loop, or while the previous batch is in flight, go
 * out as one call of `run`, and each caller gets its own item's result. One batch is in flight
 * at a time, so under load each statement carries what accumulated while the previous one ran,
 * and alone a request waits for nothing but one `setImmediate`.
 *
 * `run` gets the inputs in arrival order and returns one result per input, in the same order.
 * When it throws, every request of that batch rejects with the error (each caller decides
 * whether to retry, as it would for a statement of its own).
 */
export class Coalescer<In, Out> {
  private queue: { input: In; resolve: (out: Out) => void; reject: (error: unknown) => void }[] =
    [];
  private inFlight = false;
  private scheduled = false;

  constructor(
    private readonly run: (inputs: readonly In[]) => Promise<readonly Out[]>,
    /** Most inputs per call of `run`; the rest wait for the next one. */
    private readonly maxBatch = 500,
  ) {}

  load(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // setImmediate, not a microtask: the completions of one poll phase (many jobs' Redis and
    // socket replies) all get to ask before the batch leaves.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight = true;
    try {
      const results = await this.run(batch.map((b) => b.input));
      if (results.length !== batch.length) {
        throw new Error(`batch of ${batch.length} answered with ${results.length} results`);
      }
      batch.forEach((b, i) => b.resolve(results[i] as Out));
    } catch (error) {
      for (const b of batch) b.reject(error);
    } finally {
      this.inFlight = false;
      this.schedule();
    }
  }
}
