import { planCandidates } from '../src/adapters/db/scan-queries';
import { parsePayload } from '../src/adapters/queue/catalog';
import { fanOut } from './balance-scan';
import type { JobHandler } from './context';
import { metrics } from '../src/http/metrics';

/** The plan-quota scan (R1, R10): accounts with plans near a threshold, near expiry or ended. */
export const planScanJob: JobHandler = async (job, ctx, log) => {
  parsePayload('plan-scan', job.data);
  const started = Date.now();
  const now = ctx.clock.now();
  let cursor = '';
  let candidates = 0;
  for (;;) {
    const page = await planCandidates(
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
    if (page.length < ctx.config.scanPageSize) break;
  }
  const result = { candidates, ms: Date.now() - started };
  metrics.scanFinished('plan', result.ms, candidates);
  log.info(result, 'plan scan done');
  return result;
};
