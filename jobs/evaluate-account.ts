import { setTimeout as sleep } from 'node:timers/promises';
import { parsePayload } from '../src/adapters/queue/catalog';
import { actorOf, type JobHandler, type JobOutcome } from './context';
import { evaluateWithOthers } from './evaluation-batcher';
import { reportOutcome } from './report-outcome';

/** A timer that fires a little early (clock skew between hosts) waits at most this long, ms. */
const MAX_EARLY_WAIT_MS = 5_000;

/**
 * Evaluates one account, in one transaction with the other single-account evaluations in flight
 * (jobs/evaluation-batcher.ts): lock, decide, write the decisions' state changes and outbox rows;
 * then asks the relay to dispatch the new effects at once. A
 * timer's evaluation (a `wake` row) returns the row's outcome for the registry to settle.
 */
export const evaluateAccountJob: JobHandler = async (job, ctx, log) => {
  const payload = parsePayload('evaluate-account', job.data);
  const value = await evaluate(job.data, ctx, log);
  if (payload.outboxKey === undefined) return value;
  return {
    outbox: {
      kind: 'settle',
      key: payload.outboxKey,
      settlement: { status: 'done', reason: null },
    },
    value,
  } satisfies JobOutcome;
};

const evaluate = async (
  data: unknown,
  ctx: Parameters<JobHandler>[1],
  log: Parameters<JobHandler>[2],
): Promise<unknown> => {
  const payload = parsePayload('evaluate-account', data);
  const jobLog = log.child({ accountId: payload.accountId, idempotencyKey: payload.outboxKey });
  if (payload.at !== undefined) {
    const early = payload.at - ctx.clock.now().getTime();
    if (early > 0 && early <= MAX_EARLY_WAIT_MS) await sleep(early);
  }
  const outcome = await evaluateWithOthers(ctx, {
    accountId: payload.accountId,
    actor: actorOf(payload.origin),
  });
  if (outcome.status === 'evaluated' && outcome.newEffects > 0) ctx.relay.request();
  if (outcome.status === 'evaluated' && outcome.held > 0) ctx.breakerHeld?.();
  return reportOutcome(outcome, jobLog, { warnNotFound: true });
};
