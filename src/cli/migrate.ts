import path from 'node:path';
import { createDb } from '../adapters/db/client';
import { migrate } from '../adapters/db/migrate';

/**
 * `npm run db:migrate [-- <database-url>]`: applies the SQL migrations in drizzle/.
 *
 * The URL comes from the first argument, else DATABASE_URL. This standalone command is the one
 * place outside src/config.ts that reads the environment; the daemon passes its parsed
 * configuration to `createDb` and `migrate` instead. Without a URL it migrates the embedded
 * PGlite database under ./data, the daemon's default data folder.
 */
async function main(argv: readonly string[], databaseUrl: string | undefined): Promise<string> {
  const url = argv[0] ?? (databaseUrl || null);
  const dataDir = path.resolve('data');
  const handle = await createDb(url, dataDir, {
    poolSize: 1,
    applicationName: 'overdue-worker-migrate',
  });
  try {
    await migrate(handle.db);
  } finally {
    await handle.close();
  }
  // Never echo the URL: it may carry a password.
  return handle.driver === 'pglite'
    ? `migrations applied to embedded PGlite at ${path.join(dataDir, 'pglite')}`
    : 'migrations applied to PostgreSQL';
}

try {
  process.stdout.write(`${await main(process.argv.slice(2), process.env.DATABASE_URL)}\n`);
} catch (error) {
  process.stderr.write(
    `db:migrate failed: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exitCode = 1;
}
