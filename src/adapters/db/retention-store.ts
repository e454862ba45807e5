import { sql } from 'drizzle-orm';
import { queryRows, type Db } from './client';
import { pruneFinishedOutbox } from './outbox-store';

/**
 * Retention: every table that grows with work loses its finished rows after a set age, in small
 * batches (one short statement each, oldest first, skipping rows locked elsewhere), so pruning
 * never holds long locks or a long transaction while the daemon works. Each statement walks an
 * index that matches it (migration 0010_retention_indexes).
 */

export type PrunedTable = 'outbox' | 'notifications' | 'events';

/** Deletes up to `limit` rows of `table` older than `olderThanMs`; returns how many. */
export async function pruneBatch(
  db: Db,
  table: PrunedTable,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  switch (table) {
    case 'outbox':
      return pruneFinishedOutbox(db, olderThanMs, limit);
    case 'notifications':
      // Final statuses only: a message still pending or being sent is never pruned.
      return (
        await queryRows<{ id: number }>(
          db,
          sql`
          delete from notifications where id in (
            select id from notifications
             where status in ('sent', 'delivered', 'failed', 'undeliverable', 'superseded')
               and updated_at < now() - ${olderThanMs} * interval '1 millisecond'
             order by updated_at
             limit ${limit}
               for update skip locked)
       returning id`,
        )
      ).length;
    case 'events':
      return (
        await queryRows<{ id: number }>(
          db,
          sql`
          delete from enforcement_events where id in (
            select id from enforcement_events
             where created_at < now() - ${olderThanMs} * interval '1 millisecond'
             order by created_at
             limit ${limit}
               for update skip locked)
       returning id`,
        )
      ).length;
  }
}
