import { setTimeout as sleep } from 'node:timers/promises';
import {
  evaluateAccount,
  evaluateBatch,
  type BatchOutcome,
  type EvaluationOutcome,
  type EvaluationRequest,
} from '../src/adapters/db/evaluation';
import { Coalescer } from '../src/adapters/db/coalesce';
import type { JobContext } from './context';

/** An account another evaluation holds is tried again this many times, then waited for. */
const SKIP_RETRIES = 3;
const SKIP_RETRY_MS = 25;

/**
 * Groups the single-account evaluations in flight (payments, timers, operators: each its own
 * job, deduplicated per account in the queue) into batch transactions (src/adapters/db/
 * coalesce.ts): a lone request runs at once, and the requests that arrive while a batch is in
 * flight go out together in the next, so a burst of payments is evaluated a batch at a time.
 * Each job gets its own account's outcome.
 */
const batchers = new WeakMap<JobContext, Coalescer<EvaluationRequest, BatchOutcome>>();

function batcherOf(ctx: JobContext): Coalescer<EvaluationRequest, BatchOutcome> {
  let batcher = batchers.get(ctx);
  if (batcher === undefined) {
    batcher = new Coalescer(
      async (requests) => {
        const outcomes = await evaluateBatch(ctx.db, requests, ctx.clock, ctx.config.rules, 'skip');
        return requests.map((r) => {
          const outcome = outcomes.get(r.accountId);
          if (outcome === undefined) throw new Error(`no outcome for account ${r.accountId}`);
          return outcome;
        });
      },
      { maxBatch: ctx.config.evaluateBatchSize },
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
    const outcome = await batcherOf(ctx).load(request);
    if (outcome.status !== 'skipped' && outcome.status !== 'failed') return outcome;
    if (outcome.status === 'failed') break;
    await sleep(SKIP_RETRY_MS * (attempt + 1));
  }
  return evaluateAccount(ctx.db, request.accountId, ctx.clock, ctx.config.rules, request.actor);
}
