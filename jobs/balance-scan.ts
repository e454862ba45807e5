import { balanceCandidates, repairCandidates } from '../src/adapters/db/scan-queries';
import { parsePayload } from '../src/adapters/queue/catalog';
import { evaluationOptions } from '../src/adapters/queue/queues';
import type { JobContext, JobHandler } from './context';
import { metrics } from '../src/http/metrics';

/**
 * The balance scan: the safety net under the event-driven path. Pages through the accounts
 * whose state could change (low balance, overdue, protected or suspended, holds to repair,
 * releases due) and fans them out to per-account evaluations, deduplicated per account so
 * overlapping scans collapse. Then re-enqueues any effect Redis lost.
 */
export const balanceScanJob: JobHandler = async (job, ctx, log) => {
  parsePayload('balance-scan', job.data);
  const started = Date.now();
  const now = ctx.clock.now();
  let cursor = '';
  let candidates = 0;
  for (;;) {
    const page = await balanceCandidates(
      ctx.db,
      cursor,
      ctx.config.scanPageSize,
      now,
      ctx.config.rules,
    );
    if (page.length === 0) break;
    await fanOut(ctx, page, 'scan');
    candidates += page.length;
    cursor = page[page.length - 1] ?? cursor;
    await job.updateProgress({ candidates, cursor });
    if (page.length < ctx.config.scanPageSize) break;
  }
  const repairs = await repairCandidates(ctx.db, now);
  await fanOut(ctx, repairs, 'event');
  const restored = await ctx.relay.reconcile();
  const result = { candidates, repairs: repairs.length, restored, ms: Date.now() - started };
  metrics.scanFinished('balance', result.ms, candidates);
  log.info(result, 'balance scan done');
  return result;
};

export async function fanOut(
  ctx: JobContext,
  accountIds: readonly string[],
  mode: 'scan' | 'event',
): Promise<void> {
  await ctx.queues.addBulk(
    'evaluate-account',
    accountIds.map((accountId) => ({
      data: { accountId, origin: mode === 'scan' ? 'scan' : 'repair' },
      opts: evaluationOptions(accountId, mode),
    })),
  );
}
