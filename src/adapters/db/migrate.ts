import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { is } from 'drizzle-orm';
import { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import type { Db } from './client';

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
