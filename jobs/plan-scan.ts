import { planCandidates } from '../src/adapters/db/scan-queries';
import { parsePayload } from '../src/adapters/queue/catalog';
import { metrics } from '../src/observability/metrics';
import { enforcementOff, scanPages } from './balance-scan';
import type { JobHandler } from './context';

/** The plan-quota scan (R1, R10): accounts with plans near a threshold, near expiry or ended. */
export const planScanJob: JobHandler = async (job, ctx, log) => {
  parsePayload('plan-scan', job.data);
  if (await enforcementOff(ctx)) {
    log.info('plan scan skipped: enforcement mode is off');
    return { skipped: 'enforcement mode is off' };
  }
  const started = Date.now();
  const now = ctx.clock.now();
  const candidates = await scanPages(job, ctx, (cursor) =>
    planCandidates(ctx.db, cursor, ctx.config.scanPageSize, now, ctx.config.rules),
  );
  const result = { candidates, ms: Date.now() - started };
  metrics.scanFinished('plan', result.ms, candidates);
  log.info(result, 'plan scan done');
  return result;
};
