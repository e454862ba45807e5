import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { is } from 'drizzle-orm';
import { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import { createDb, type Db } from './client';

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
 * `drizzle.__drizzle_migrations`, each in one transaction. Applying twice is a no-op.
 */
export async function migrate(db: Db, migrationsFolder: string = MIGRATIONS_FOLDER): Promise<void> {
  const config = { migrationsFolder };
  if (is(db, PgliteDatabase)) {
    await migratePglite(db, config);
  } else if (is(db, PostgresJsDatabase)) {
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

export async function migrateDatabase(url: string | null, dataDir: string): Promise<void> {
  const handle = await createDb(url, dataDir, {
    poolSize: 1,
    applicationName: 'overdue-worker-migrate',
    statementTimeoutMs: MIGRATION_STATEMENT_TIMEOUT_MS,
  });
  try {
    await migrate(handle.db);
  } finally {
    await handle.close();
  }
}
