import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';

/**
 * The database handle repositories take. Both drivers' databases (and their transactions) are
 * `PgDatabase`s, so every repository function accepts either a database or a transaction of
 * either driver. No relational schema is registered: repositories use the query builder only.
 */
export type Db = PgDatabase<PgQueryResultHKT>;

/** A transaction of either driver, as passed to `db.transaction(async (tx) => ...)`. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

export type DbDriver = 'postgres' | 'pglite';

/** Stops a LISTEN. */
export type Unlisten = () => Promise<void>;

export interface DbHandle {
  readonly db: Db;
  readonly driver: DbDriver;
  /**
   * LISTENs on `channel`. `onMessage` gets each NOTIFY payload; `onReconnect` runs when a lost
   * listening connection is back (notifications sent meanwhile are lost: catch up then).
   */
  listen(
    channel: string,
    onMessage: (payload: string) => void,
    onReconnect?: () => void,
  ): Promise<Unlisten>;
  /** Ends the pool (waiting up to 5 s for running queries) or closes the embedded database. */
  close(): Promise<void>;
}

export interface DbOptions {
  /** postgres.js pool size (connections). Default 10: enough for the worker's concurrency. */
  readonly poolSize?: number;
  /** Sent as application_name, visible in pg_stat_activity. */
  readonly applicationName?: string;
}

/**
 * Opens the database: PostgreSQL through postgres.js when `url` is set, else an embedded PGlite
 * persisted under `<dataDir>/pglite` (single process; for trying the daemon out, not production).
 */
export async function createDb(
  url: string | null,
  dataDir: string,
  options: DbOptions = {},
): Promise<DbHandle> {
  if (url === null) {
    const dir = path.join(dataDir, 'pglite');
    mkdirSync(dir, { recursive: true });
    const client = new PGlite(dir);
    await client.waitReady;
    const db = drizzlePglite({ client });
    return {
      db,
      driver: 'pglite',
      listen: async (channel, onMessage) => {
        // In-process database: the connection cannot be lost, so there is nothing to catch up.
        const stop = await client.listen(channel, onMessage);
        return () => stop();
      },
      close: async () => {
        if (!client.closed) await client.close();
      },
    };
  }
  const client = postgres(url, {
    max: options.poolSize ?? 10,
    /** Seconds before an idle connection is closed. */
    idle_timeout: 30,
    /** Seconds to wait for a connection before the query fails. */
    connect_timeout: 10,
    connection: { application_name: options.applicationName ?? 'overdue-worker' },
    // NOTICEs (e.g. "relation already exists, skipping" from the migrator) are not errors; by
    // default postgres.js prints them with console.log, bypassing the structured logger.
    onnotice: () => undefined,
  });
  const db = drizzlePostgres({ client });
  return {
    db,
    driver: 'postgres',
    listen: async (channel, onMessage, onReconnect) => {
      let connected = false;
      // postgres.js keeps one dedicated connection for LISTEN and re-listens after it drops;
      // `onlisten` runs on every (re)connect.
      const subscription = await client.listen(channel, onMessage, () => {
        if (connected) onReconnect?.();
        connected = true;
      });
      return () => subscription.unlisten();
    },
    close: () => client.end({ timeout: 5 }),
  };
}

/**
 * Rows of a raw SQL query, for either driver: postgres.js returns the rows as an array, PGlite
 * as `{ rows }`. `T` describes the selected columns (int8 columns arrive as strings with
 * postgres.js; convert them where they are used).
 */
export async function queryRows<T>(db: Db | Tx, query: SQL): Promise<T[]> {
  const result: unknown = await db.execute(query);
  if (Array.isArray(result)) return result as T[];
  const rows = (result as { rows?: unknown }).rows;
  return Array.isArray(rows) ? (rows as T[]) : [];
}
