import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { createDb, type Db, type DbHandle } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';

/** Server for integration tests; each test file gets its own database on it. */
export const TEST_SERVER_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  /** Connection URL of the fresh database. */
  readonly url: string;
  readonly name: string;
  readonly db: Db;
  readonly handle: DbHandle;
  /** Plain postgres.js client on the same database, for introspection and raw SQL. */
  readonly raw: postgres.Sql;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

function urlFor(database: string): string {
  const url = new URL(TEST_SERVER_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

/**
 * Creates an empty database with a random name (`ow_test_<hex>`) and, unless `migrated` is false,
 * applies the migrations. Pair with `drop()` in `afterAll`.
 */
export async function createTestDatabase(
  options: { migrated?: boolean } = {},
): Promise<TestDatabase> {
  const name = `ow_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const url = urlFor(name);
  const handle = await createDb(url, '/nonexistent-unused', { poolSize: 4 });
  if (options.migrated !== false) await migrate(handle.db);
  const raw = postgres(url, { max: 2, onnotice: () => undefined });
  return {
    url,
    name,
    db: handle.db,
    handle,
    raw,
    drop: async () => {
      await raw.end({ timeout: 5 });
      await handle.close();
      const cleanup = postgres(TEST_SERVER_URL, { max: 1, onnotice: () => undefined });
      try {
        await cleanup.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await cleanup.end({ timeout: 5 });
      }
    },
  };
}

/** The error Postgres raised (constraint name, SQLSTATE), for asserting which check fired. */
export interface PgErrorInfo {
  readonly code: string | undefined;
  readonly constraint: string | undefined;
}

/** Runs `fn`, expects it to fail with a Postgres error, and returns that error's details. */
export async function pgError(fn: () => Promise<unknown>): Promise<PgErrorInfo> {
  try {
    await fn();
  } catch (error) {
    // drizzle wraps driver errors in DrizzleQueryError with the driver's error as `cause`.
    let current: unknown = error;
    while (current instanceof Error) {
      const e = current as Error & {
        code?: unknown;
        constraint_name?: unknown;
        constraint?: unknown;
      };
      if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
        const constraint = e.constraint_name ?? e.constraint;
        return {
          code: e.code,
          constraint: typeof constraint === 'string' ? constraint : undefined,
        };
      }
      current = e.cause;
    }
    throw error;
  }
  throw new Error('expected a database error, but the statement succeeded');
}
