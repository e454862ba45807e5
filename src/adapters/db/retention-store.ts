import { sql, type SQL } from 'drizzle-orm';
import { FINAL_NOTIFICATION_STATUSES } from '../../notify/send-rules';
import { queryRows, type Db } from './client';
import { FINAL_OUTBOX_STATUSES } from './outbox-store';

/**
 * Retention: every table that grows with work loses its finished rows after a set age, in small
 * batches (one short statement each, oldest first, skipping rows locked elsewhere), so pruning
 * never holds long locks or a long transaction while the daemon works. Each statement walks an
 * index that matches it (migration 0010_retention_indexes).
 */

export type PrunedTable = 'outbox' | 'notifications' | 'events' | 'breaker';

/** Statuses as a literal SQL list: a partial index's predicate matches literals, not parameters. */
const literalList = (values: readonly string[]): SQL =>
  sql.raw(`(${values.map((v) => `'${v}'`).join(', ')})`);

/**
 * Each pruned table: its name, the instant its age counts from, and which rows may go at all.
 * Outbox rows and messages go only once final: a pending, dispatched or sending row never does.
 */
const PRUNED: Record<PrunedTable, { table: SQL; at: SQL; finished: SQL }> = {
  outbox: {
    table: sql.raw('outbox'),
    at: sql.raw('updated_at'),
    finished: sql`status in ${literalList(FINAL_OUTBOX_STATUSES)} and `,
  },
  notifications: {
    table: sql.raw('notifications'),
    at: sql.raw('updated_at'),
    finished: sql`status in ${literalList(FINAL_NOTIFICATION_STATUSES)} and `,
  },
  events: { table: sql.raw('enforcement_events'), at: sql.raw('created_at'), finished: sql`` },
  /** The breaker's ledger goes with the events; a decision still held never does. */
  breaker: {
    table: sql.raw('breaker_ledger'),
    at: sql.raw('decided_at'),
    finished: sql`status <> 'held' and `,
  },
};

/** Deletes up to `limit` rows of `table` older than `olderThanMs`; returns how many. */
export async function pruneBatch(
  db: Db,
  table: PrunedTable,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  const p = PRUNED[table];
  const rows = await queryRows<{ id: number }>(
    db,
    sql`
    delete from ${p.table} where id in (
      select id from ${p.table}
       where ${p.finished}${p.at} < now() - ${olderThanMs} * interval '1 millisecond'
       order by ${p.at}
       limit ${limit}
         for update skip locked)
 returning id`,
  );
  return rows.length;
}
