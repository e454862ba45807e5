import { fileURLToPath } from 'node:url';
import { is } from 'drizzle-orm';
import { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import type { Db } from './client';

/** drizzle/ at the repository root, where drizzle-kit writes the reviewed SQL migrations. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../../drizzle', import.meta.url));

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
