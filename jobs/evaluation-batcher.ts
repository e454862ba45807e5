import { setTimeout as sleep } from 'node:timers/promises';
import {
  evaluateAccount,
  evaluateBatch,
  type BatchOutcome,
  type EvaluationOutcome,
  type EvaluationRequest,
} from '../src/adapters/db/evaluation';
import type { JobContext } from './context';

/** Batches of single-account evaluations one daemon runs at once. */
const IN_FLIGHT = 2;
/** An account another evaluation holds is tried again this many times, then waited for. */
const SKIP_RETRIES = 3;
const SKIP_RETRY_MS = 25;

interface Waiting {
  readonly request: EvaluationRequest;
  readonly resolve: (outcome: BatchOutcome) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Groups the single-account evaluations in flight (payments, timers, operators: each its own
 * job, deduplicated per account in the queue) into batch transactions. The first request runs at
 * once, alone; the requests that arrive while a batch is in flight wait for the next one, so a
 * burst of payments is evaluated a batch at a time and a lone payment never waits. Each job gets
 * its own account's outcome.
 */
export class EvaluationBatcher {
  private waiting: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly run: (
      requests: readonly EvaluationRequest[],
    ) => Promise<ReadonlyMap<string, BatchOutcome>>,
    private readonly maxBatch: number,
  ) {}

  evaluate(request: EvaluationRequest): Promise<BatchOutcome> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ request, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // Requests made in the same turn of the event loop go out together.
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    while (this.inFlight < IN_FLIGHT && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.inFlight += 1;
      this.run(batch.map((w) => w.request))
        .then(
          (outcomes) => {
            for (const w of batch) {
              const outcome = outcomes.get(w.request.accountId);
              if (outcome) w.resolve(outcome);
              else w.reject(new Error(`no outcome for account ${w.request.accountId}`));
            }
          },
          (error: unknown) => {
            for (const w of batch) w.reject(error);
          },
        )
        .finally(() => {
          this.inFlight -= 1;
          this.flush();
        });
    }
  }
}

const batchers = new WeakMap<JobContext, EvaluationBatcher>();

function batcherOf(ctx: JobContext): EvaluationBatcher {
  let batcher = batchers.get(ctx);
  if (batcher === undefined) {
    batcher = new EvaluationBatcher(
      (requests) => evaluateBatch(ctx.db, requests, ctx.clock, ctx.config.rules, 'skip'),
      ctx.config.evaluateBatchSize,
    );
    batchers.set(ctx, batcher);
  }
  return batcher;
}

/**
 * Evaluates one account with the daemon's other single-account evaluations in flight. An account
 * another transaction holds (a scan's page, another daemon) is tried again a few times, then
 * evaluated on its own, waiting for the lock; so is one whose writes failed in its batch, where
 * the error is thrown for the job to retry.
 */
export async function evaluateWithOthers(
  ctx: JobContext,
  request: EvaluationRequest,
): Promise<EvaluationOutcome> {
  for (let attempt = 0; attempt <= SKIP_RETRIES; attempt++) {
    const outcome = await batcherOf(ctx).evaluate(request);
    if (outcome.status !== 'skipped' && outcome.status !== 'failed') return outcome;
    if (outcome.status === 'failed') break;
    await sleep(SKIP_RETRY_MS * (attempt + 1));
  }
  return evaluateAccount(ctx.db, request.accountId, ctx.clock, ctx.config.rules, request.actor);
}
