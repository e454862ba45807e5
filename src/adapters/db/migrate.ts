import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { is, sql } from 'drizzle-orm';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import { createDb, queryRows, type Db } from './client';

/**
 * drizzle/ at the repository root, where drizzle-kit writes the reviewed SQL migrations: three
 * levels up from this module in the sources (src/adapters/db/), one level up in the bundle that
 * `npm run build` writes (dist/*.js). The first folder holding drizzle-kit's journal wins.
 */
export const MIGRATIONS_FOLDER = ((): string => {
  const [source, bundle] = ['../../../drizzle', '../drizzle'].map((relative) =>
    fileURLToPath(new URL(relative, import.meta.url)),
  ) as [string, string];
  const hasJournal = (folder: string) => existsSync(path.join(folder, 'meta', '_journal.json'));
  return !hasJournal(source) && hasJournal(bundle) ? bundle : source;
})();

/**
 * Applies every migration of `migrationsFolder` not yet recorded in
 * `drizzle.__drizzle_migrations`, in one transaction. Applying twice is a no-op. On PostgreSQL,
 * the pending migrations' indexes on existing tables are built first without locking out writes
 * (buildIndexesConcurrently).
 */
export async function migrate(
  db: Db,
  migrationsFolder: string = MIGRATIONS_FOLDER,
  log: (message: string) => void = () => undefined,
): Promise<void> {
  const config = { migrationsFolder };
  if (is(db, PgliteDatabase)) {
    await migratePglite(db, config);
  } else if (is(db, PostgresJsDatabase)) {
    await buildIndexesConcurrently(db, migrationsFolder, log);
    await migratePostgres(db, config);
  } else {
    throw new TypeError('migrate: unsupported database driver (expected postgres.js or PGlite)');
  }
}

/**
 * A migration may rewrite a large table in one statement (a backfill, an index): it runs on a
 * one-connection handle of its own with a statement limit of an hour instead of the daemon's
 * (DB_STATEMENT_TIMEOUT), so it does not fail where a daemon query would be stuck, yet cannot
 * hang a start-up forever either. Opened, migrated, closed before the daemon's pool opens.
 */
export const MIGRATION_STATEMENT_TIMEOUT_MS = 3_600_000;

export async function migrateDatabase(
  url: string | null,
  dataDir: string,
  log: (message: string) => void = () => undefined,
): Promise<void> {
  const handle = await createDb(url, dataDir, {
    poolSize: 1,
    applicationName: 'overdue-worker-migrate',
    statementTimeoutMs: MIGRATION_STATEMENT_TIMEOUT_MS,
  });
  try {
    await migrate(handle.db, MIGRATIONS_FOLDER, log);
  } finally {
    await handle.close();
  }
}

/** `CREATE [UNIQUE] INDEX IF NOT EXISTS "name" ON …`: the form every migration's index takes. */
const INDEX_STATEMENT = /^\s*CREATE (UNIQUE )?INDEX IF NOT EXISTS "([^"]+)" (ON .*)$/s;

/** The SQLSTATE of a failed statement (drizzle wraps the driver's error in `cause`). */
function sqlState(error: unknown): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/**
 * drizzle's migrator applies the pending migrations in one transaction, where a `CREATE INDEX`
 * blocks every write to its table until the index is built: minutes for a large table on a live
 * database. Before it runs, each index of the pending migrations is built here with
 * `CONCURRENTLY`, outside any transaction (writes go on meanwhile), so the migration's
 * `CREATE INDEX IF NOT EXISTS` then finds it and does nothing. An index on a table or column the
 * pending migrations create does not build here (undefined table or column) and is built by the
 * migration, on a table that is new or a column just added. An index a concurrent build left
 * invalid (interrupted, or a duplicate for a unique one) is dropped, here before it is built
 * again, or at once when this build fails, which then stops the start-up with its reason.
 * A database without a migration yet (a fresh one) has nothing to protect: skipped.
 */
export async function buildIndexesConcurrently(
  db: Db,
  migrationsFolder: string,
  log: (message: string) => void,
): Promise<string[]> {
  const [known] = await queryRows<{ present: boolean }>(
    db,
    sql`select to_regclass('drizzle.__drizzle_migrations') is not null as present`,
  );
  if (known?.present !== true) return [];
  const [last] = await queryRows<{ created_at: string | number | null }>(
    db,
    sql`select max(created_at) as created_at from drizzle.__drizzle_migrations`,
  );
  const appliedUntil = Number(last?.created_at ?? 0);
  const pending = readMigrationFiles({ migrationsFolder }).filter(
    (m) => m.folderMillis > appliedUntil,
  );
  const built: string[] = [];
  for (const statement of pending.flatMap((m) => m.sql)) {
    const match = INDEX_STATEMENT.exec(statement);
    if (match === null) continue;
    const [, unique = '', name = '', rest = ''] = match;
    const [existing] = await queryRows<{ valid: boolean }>(
      db,
      sql`select i.indisvalid as valid from pg_index i
           where i.indexrelid = to_regclass(${`public."${name}"`})`,
    );
    if (existing?.valid === true) continue;
    const drop = sql.raw(`DROP INDEX CONCURRENTLY IF EXISTS "${name}"`);
    if (existing !== undefined) await db.execute(drop);
    const started = Date.now();
    try {
      await db.execute(
        sql.raw(`CREATE ${unique}INDEX CONCURRENTLY IF NOT EXISTS "${name}" ${rest}`),
      );
    } catch (error) {
      const state = sqlState(error);
      // 42P01 undefined table, 42703 undefined column: created by the pending migrations.
      if (state === '42P01' || state === '42703') continue;
      await db.execute(drop).catch(() => undefined);
      throw new Error(`building index ${name} concurrently failed`, { cause: error });
    }
    built.push(name);
    log(`index ${name} built concurrently in ${Date.now() - started} ms`);
  }
  return built;
}
