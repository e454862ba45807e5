import { pruneBatch, type PrunedTable } from '../src/adapters/db/retention-store';
import { expireEarlyCallbacks } from '../src/adapters/db/sms-callback-store';
import { parsePayload } from '../src/adapters/queue/catalog';
import type { JobHandler } from './context';

/** Rows deleted per statement: short statements, short row locks. */
export const PRUNE_BATCH = 500;
/** Statements per table per run; what is left waits for the next run (hourly). */
const MAX_BATCHES = 200;
/** A kept SMS callback whose message never showed up is dropped after this, ms. */
const EARLY_CALLBACK_MAX_AGE_MS = 24 * 3_600_000;

/**
 * prune: deletes finished outbox rows, final notifications, enforcement events and the breaker
 * ledger's decided rows (with the events) older than their retention (RETENTION_*), in batches of PRUNE_BATCH, and drops SMS callbacks kept for a
 * message that never showed up within a day (one log line each).
 */
export const pruneJob: JobHandler = async (job, ctx, log) => {
  parsePayload('prune', job.data);
  const r = ctx.config.retention;
  const ages: Record<PrunedTable, number> = {
    outbox: r.outboxMs,
    notifications: r.notificationsMs,
    events: r.eventsMs,
    breaker: r.eventsMs,
  };
  const deleted: Record<PrunedTable, number> = {
    outbox: 0,
    notifications: 0,
    events: 0,
    breaker: 0,
  };
  let batches = 0;
  for (const table of Object.keys(ages) as PrunedTable[]) {
    for (let i = 0; i < MAX_BATCHES; i += 1) {
      const n = await pruneBatch(ctx.db, table, ages[table], PRUNE_BATCH);
      if (n > 0) batches += 1;
      deleted[table] += n;
      if (n < PRUNE_BATCH) break;
    }
  }
  for (const e of await expireEarlyCallbacks(ctx.db, EARLY_CALLBACK_MAX_AGE_MS)) {
    log.warn(
      { provider: e.providerId, messageId: e.messageId, status: e.status },
      'SMS status callback dropped: no message with this id was recorded within a day',
    );
  }
  if (batches > 0) log.info({ ...deleted, batches }, 'pruned');
  return { ...deleted, batches };
};
