import type { Job } from 'bullmq';
import { readControlState } from '../src/adapters/db/control-store';
import { balanceCandidates, repairCandidates } from '../src/adapters/db/scan-queries';
import { parsePayload } from '../src/adapters/queue/catalog';
import { evaluationBatches, evaluationOptions } from '../src/adapters/queue/queues';
import { metrics } from '../src/observability/metrics';
import type { JobContext, JobHandler } from './context';

/**
 * The balance scan: the safety net under the event-driven path. Pages through the accounts
 * whose state could change (low balance, overdue, protected or suspended, holds to repair,
 * releases due) and fans them out to evaluations, one `evaluate-batch` job per
 * EVALUATE_BATCH_SIZE candidates (a page already waiting is not added again). Then re-enqueues any effect Redis lost.
 */
export const balanceScanJob: JobHandler = async (job, ctx, log) => {
  const { origin } = parsePayload('balance-scan', job.data);
  if (await enforcementOff(ctx)) {
    log.info('balance scan skipped: enforcement mode is off');
    return { skipped: 'enforcement mode is off' };
  }
  const started = Date.now();
  const now = ctx.clock.now();
  // The scheduler's scan re-checks accounts already in enforcement only now and then; a scan
  // at start-up, after a listener reconnect (NOTIFYs may be lost) or by an operator reads all.
  const recheckBefore =
    origin === 'scheduler' ? new Date(now.getTime() - ctx.config.scanRecheckIntervalMs) : null;
  const candidates = await scanPages(job, ctx, (cursor) =>
    balanceCandidates(
      ctx.db,
      cursor,
      ctx.config.scanPageSize,
      now,
      ctx.config.rules,
      recheckBefore,
    ),
  );
  const repairs = await repairCandidates(ctx.db, now);
  await fanOut(ctx, repairs, 'event');
  const restored = await ctx.relay.reconcile();
  const result = { candidates, repairs: repairs.length, restored, ms: Date.now() - started };
  metrics.scanFinished('balance', result.ms, candidates);
  log.info(result, 'balance scan done');
  return result;
};

/** ENFORCEMENT_MODE / the operator's mode is `off`: scans do nothing. */
export async function enforcementOff(ctx: JobContext): Promise<boolean> {
  return (await readControlState(ctx.db)).mode === 'off';
}

/**
 * Keyset paging shared by the scans: `page(cursor)` returns the next ids after `cursor` in id
 * order (at most SCAN_PAGE_SIZE); each page is fanned out before the next is read, so one page
 * is all a scan holds. Returns how many accounts it enqueued.
 */
export async function scanPages(
  job: Job,
  ctx: JobContext,
  page: (cursor: string) => Promise<string[]>,
): Promise<number> {
  let cursor = '';
  let candidates = 0;
  for (;;) {
    const ids = await page(cursor);
    if (ids.length === 0) break;
    await fanOut(ctx, ids, 'scan');
    candidates += ids.length;
    cursor = ids[ids.length - 1] ?? cursor;
    await job.updateProgress({ candidates, cursor });
    if (ids.length < ctx.config.scanPageSize) break;
  }
  return candidates;
}

export async function fanOut(
  ctx: JobContext,
  accountIds: readonly string[],
  mode: 'scan' | 'event',
): Promise<void> {
  if (mode === 'scan') {
    // A page of candidates is evaluated in batches: one job, one transaction per batch.
    await ctx.queues.addBulk(
      'evaluate-batch',
      evaluationBatches(accountIds, ctx.config.evaluateBatchSize, 'scan'),
    );
    return;
  }
  await ctx.queues.addBulk(
    'evaluate-account',
    accountIds.map((accountId) => ({
      data: { accountId, origin: 'repair' },
      opts: evaluationOptions(accountId, mode),
    })),
  );
}
