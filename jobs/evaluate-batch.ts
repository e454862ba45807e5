import { evaluateBatch } from '../src/adapters/db/evaluation';
import { parsePayload } from '../src/adapters/queue/catalog';
import { evaluationOptions } from '../src/adapters/queue/queues';
import { metrics } from '../src/observability/metrics';
import { actorOf, type JobHandler } from './context';

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
    shadow: 0,
    off: 0,
  };
  const again: string[] = [];
  for (const [accountId, outcome] of outcomes) {
    switch (outcome.status) {
      case 'evaluated': {
        counts.evaluated += 1;
        counts.newEffects += outcome.newEffects;
        const kinds = outcome.decisions.map((d) => d.kind);
        metrics.evaluated('evaluated', kinds);
        if (kinds.length > 0) {
          log.info(
            { accountId, decisions: kinds, newEffects: outcome.newEffects },
            'account evaluated',
          );
        }
        break;
      }
      case 'invalid':
        counts.invalid += 1;
        metrics.evaluated('invalid');
        log.warn(
          { accountId, reason: outcome.reason },
          'account skipped: its rows break the contract',
        );
        break;
      case 'shadow': {
        counts.shadow += 1;
        metrics.evaluated('shadow');
        const kinds = outcome.decisions.map((d) => d.kind);
        if (kinds.length > 0)
          log.info({ accountId, decisions: kinds }, 'account evaluated in shadow mode');
        break;
      }
      case 'off':
        counts.off += 1;
        metrics.evaluated('off');
        break;
      case 'not-found':
        counts.notFound += 1;
        metrics.evaluated('not-found');
        break;
      case 'skipped':
      case 'failed':
        again.push(accountId);
        if (outcome.status === 'failed')
          log.warn({ accountId, error: outcome.error }, 'evaluating alone');
        break;
    }
  }
  if (counts.newEffects > 0) ctx.relay.request();
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
