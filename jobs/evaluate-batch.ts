import { evaluateBatch } from '../src/adapters/db/evaluation';
import { parsePayload } from '../src/adapters/queue/catalog';
import { evaluationOptions } from '../src/adapters/queue/queues';
import { actorOf, type JobHandler } from './context';
import { reportOutcome, type ReportedOutcome } from './report-outcome';

const COUNTED = {
  evaluated: 'evaluated',
  invalid: 'invalid',
  'not-found': 'notFound',
  shadow: 'shadow',
  off: 'off',
} as const satisfies Record<ReportedOutcome['status'], string>;

/**
 * Evaluates a page of a scan's candidates in one transaction (src/adapters/db/evaluation.ts):
 * the accounts are locked with SKIP LOCKED, so a page never waits behind an evaluation that holds
 * one of them. Those it skipped, and any whose writes failed on their own, are queued again as
 * single-account evaluations (deduplicated per account): never dropped.
 */
export const evaluateBatchJob: JobHandler = async (job, ctx, log) => {
  const { accountIds, origin } = parsePayload('evaluate-batch', job.data);
  const actor = actorOf(origin);
  const outcomes = await evaluateBatch(
    ctx.db,
    accountIds.map((accountId) => ({ accountId, actor })),
    ctx.clock,
    ctx.config.rules,
    'skip',
  );
  const counts = {
    evaluated: 0,
    invalid: 0,
    notFound: 0,
    requeued: 0,
    newEffects: 0,
    held: 0,
    shadow: 0,
    off: 0,
  };
  const again: string[] = [];
  for (const [accountId, outcome] of outcomes) {
    if (outcome.status === 'skipped' || outcome.status === 'failed') {
      again.push(accountId);
      if (outcome.status === 'failed')
        log.warn({ accountId, error: outcome.error }, 'evaluating alone');
      continue;
    }
    const reported = reportOutcome(outcome, log, { fields: { accountId }, warnNotFound: false });
    counts[COUNTED[reported.status]] += 1;
    if (reported.status === 'evaluated') {
      counts.newEffects += reported.newEffects;
      counts.held += reported.held;
    }
  }
  if (counts.newEffects > 0) ctx.relay.request();
  if (counts.held > 0) ctx.breakerHeld?.();
  if (again.length > 0) {
    counts.requeued = again.length;
    await ctx.queues.addBulk(
      'evaluate-account',
      again.map((accountId) => ({
        data: { accountId, origin },
        opts: evaluationOptions(accountId, 'scan'),
      })),
    );
  }
  // The re-queued ids are in the job's result, for an operator reading it on the dashboard.
  return { accounts: accountIds.length, ...counts, requeuedIds: again };
};
