import { getTableName, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { Db } from './client';
import { accounts, bills, resourcePlans, services, studioInstances } from './schema';

/**
 * Upserts of the rows the billing system owns, keyed by id. Used by tests, seeding and the HTTP
 * API that accepts the same facts. An update writes only the fields present in `row` (undefined
 * fields are left alone), keeps `created_at`, and sets `updated_at` to the transaction's now().
 */

export type AccountInsert = typeof accounts.$inferInsert;
export type BillInsert = typeof bills.$inferInsert;
export type ServiceInsert = typeof services.$inferInsert;
export type StudioInstanceInsert = typeof studioInstances.$inferInsert;
export type PlanInsert = typeof resourcePlans.$inferInsert;

/** Fields of `row` an upsert may overwrite: never the key, the creation instant or `version`. */
function updatable<T extends object>(row: T): Partial<T> {
  const fixed = new Set<PropertyKey>(['id', 'createdAt', 'version']);
  return Object.fromEntries(Object.entries(row).filter(([key]) => !fixed.has(key))) as Partial<T>;
}

/**
 * Inserts `row`, or updates the stored row of its id with the fields present (plus `set`), and
 * returns what is stored.
 */
async function upsertById<T extends PgTable & { id: AnyPgColumn }>(
  db: Db,
  table: T,
  row: T['$inferInsert'] & { id: string },
  set: Record<string, SQL> = {},
): Promise<T['$inferSelect']> {
  const rows = (await db
    .insert(table)
    .values(row)
    .onConflictDoUpdate({
      target: table.id,
      set: { ...updatable(row), ...set, updatedAt: sql`now()` },
    })
    .returning()) as T['$inferSelect'][];
  // INSERT ... ON CONFLICT DO UPDATE ... RETURNING always returns the row.
  const [saved] = rows;
  if (saved === undefined) {
    throw new Error(`upsert into ${getTableName(table)} returned no row for ${row.id}`);
  }
  return saved;
}

/** Also bumps `version`, so a daemon holding an older version sees the account changed. */
export function upsertAccount(db: Db, row: AccountInsert): Promise<typeof accounts.$inferSelect> {
  return upsertById(db, accounts, row, { version: sql`${accounts.version} + 1` });
}

export function upsertBill(db: Db, row: BillInsert): Promise<typeof bills.$inferSelect> {
  return upsertById(db, bills, row);
}

export function upsertService(db: Db, row: ServiceInsert): Promise<typeof services.$inferSelect> {
  return upsertById(db, services, row);
}

export function upsertStudioInstance(
  db: Db,
  row: StudioInstanceInsert,
): Promise<typeof studioInstances.$inferSelect> {
  return upsertById(db, studioInstances, row);
}

export function upsertPlan(db: Db, row: PlanInsert): Promise<typeof resourcePlans.$inferSelect> {
  return upsertById(db, resourcePlans, row);
}
