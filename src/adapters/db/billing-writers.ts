import { sql } from 'drizzle-orm';
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

/** Also bumps `version`, so a daemon holding an older version sees the account changed. */
export async function upsertAccount(
  db: Db,
  row: AccountInsert,
): Promise<typeof accounts.$inferSelect> {
  const [saved] = await db
    .insert(accounts)
    .values(row)
    .onConflictDoUpdate({
      target: accounts.id,
      set: { ...updatable(row), version: sql`${accounts.version} + 1`, updatedAt: sql`now()` },
    })
    .returning();
  return must(saved, 'accounts', row.id);
}

export async function upsertBill(db: Db, row: BillInsert): Promise<typeof bills.$inferSelect> {
  const [saved] = await db
    .insert(bills)
    .values(row)
    .onConflictDoUpdate({ target: bills.id, set: { ...updatable(row), updatedAt: sql`now()` } })
    .returning();
  return must(saved, 'bills', row.id);
}

export async function upsertService(
  db: Db,
  row: ServiceInsert,
): Promise<typeof services.$inferSelect> {
  const [saved] = await db
    .insert(services)
    .values(row)
    .onConflictDoUpdate({ target: services.id, set: { ...updatable(row), updatedAt: sql`now()` } })
    .returning();
  return must(saved, 'services', row.id);
}

export async function upsertStudioInstance(
  db: Db,
  row: StudioInstanceInsert,
): Promise<typeof studioInstances.$inferSelect> {
  const [saved] = await db
    .insert(studioInstances)
    .values(row)
    .onConflictDoUpdate({
      target: studioInstances.id,
      set: { ...updatable(row), updatedAt: sql`now()` },
    })
    .returning();
  return must(saved, 'studio_instances', row.id);
}

export async function upsertPlan(
  db: Db,
  row: PlanInsert,
): Promise<typeof resourcePlans.$inferSelect> {
  const [saved] = await db
    .insert(resourcePlans)
    .values(row)
    .onConflictDoUpdate({
      target: resourcePlans.id,
      set: { ...updatable(row), updatedAt: sql`now()` },
    })
    .returning();
  return must(saved, 'resource_plans', row.id);
}

function must<T>(row: T | undefined, table: string, id: string): T {
  // INSERT ... ON CONFLICT DO UPDATE ... RETURNING always returns the row.
  if (row === undefined) throw new Error(`upsert into ${table} returned no row for ${id}`);
  return row;
}
