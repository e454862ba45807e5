import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { Config } from '../../config';

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
  /**
   * statement_timeout of every connection, ms: the server cancels a statement (lock waits
   * included) running longer. 0: none set here (the server's own setting). Default 60 s.
   */
  readonly statementTimeoutMs?: number;
  /**
   * idle_in_transaction_session_timeout, ms: the server ends a session whose transaction waits
   * this long for its next statement (its locks are released, its writes rolled back). 0: none
   * set here (the server's own setting). Default 60 s.
   */
  readonly idleInTransactionTimeoutMs?: number;
  /**
   * Client side, ms: a connection that owes answers and has received nothing for this long is
   * taken for dead (a half-open TCP connection, where the server's limits cannot reach us): its
   * queries fail with RESPONSE_TIMEOUT and it reconnects. null: no limit. Default: the statement
   * timeout plus 30 s, so the server's own cancel (57014) normally comes first; no limit when
   * statements have none.
   */
  readonly responseTimeoutMs?: number | null;
  /**
   * Named prepared statements, one per statement text and connection (postgres.js's default).
   * false behind a pooler in transaction mode (PgBouncer). Default true.
   */
  readonly prepare?: boolean;
}

/**
 * Limits of a handle opened without settings (tests, benchmarks); the daemon and the command take
 * theirs from DB_STATEMENT_TIMEOUT and DB_IDLE_IN_TRANSACTION_TIMEOUT (same defaults).
 */
const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000;
const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
/** Headroom of the client-side response timeout over statement_timeout. */
const RESPONSE_TIMEOUT_MARGIN_MS = 30_000;

/** The pool the settings describe (DB_POOL_SIZE, DB_STATEMENT_TIMEOUT, DB_IDLE_IN_TRANSACTION_TIMEOUT). */
export function dbOptions(
  config: Pick<
    Config,
    'dbPoolSize' | 'dbPrepare' | 'dbStatementTimeoutMs' | 'dbIdleInTransactionTimeoutMs'
  >,
): DbOptions {
  return {
    poolSize: config.dbPoolSize,
    prepare: config.dbPrepare,
    statementTimeoutMs: config.dbStatementTimeoutMs ?? 0,
    idleInTransactionTimeoutMs: config.dbIdleInTransactionTimeoutMs ?? 0,
  };
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
  const statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const responseTimeoutMs =
    options.responseTimeoutMs !== undefined
      ? options.responseTimeoutMs
      : statementTimeoutMs > 0
        ? statementTimeoutMs + RESPONSE_TIMEOUT_MARGIN_MS
        : null;
  const client = postgres(url, {
    max: options.poolSize ?? 10,
    prepare: options.prepare ?? true,
    /** Seconds before an idle connection is closed. */
    idle_timeout: 30,
    /** Seconds to wait for a connection before the query fails. */
    connect_timeout: 10,
    /** Seconds; see DbOptions.responseTimeoutMs (a patched-in postgres.js option). */
    response_timeout: responseTimeoutMs === null ? null : responseTimeoutMs / 1000,
    // Startup parameters (milliseconds), so they hold for every connection of the pool and its
    // LISTEN connection from the first statement on. postgres.js leaves out a 0: the server's
    // own setting then applies (no limit unless the role or database sets one).
    connection: {
      application_name: options.applicationName ?? 'overdue-worker',
      statement_timeout: statementTimeoutMs,
      idle_in_transaction_session_timeout:
        options.idleInTransactionTimeoutMs ?? DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    },
    // NOTICEs (e.g. "relation already exists, skipping" from the migrator) are not errors; by
    // default postgres.js prints them with console.log, bypassing the structured logger.
    onnotice: () => undefined,
  });
  const db = drizzlePostgres({
    client: (options.prepare ?? true) ? preparing(client, new PreparePolicy()) : client,
  });
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

/** Most statement texts a pool prepares (each connection holds at most this many). */
const MAX_PREPARED_TEXTS = 300;
/** Texts seen once remembered before the count starts afresh. */
const MAX_SEEN_TEXTS = 5_000;

/**
 * Which statement texts run as named prepared statements: a text seen a second time, while fewer
 * than MAX_PREPARED_TEXTS texts are prepared. The hot paths' statements have fixed texts, so they
 * are parsed and described once per connection; a text whose shape changes with its input (a list
 * spelled out in the SQL) takes no more than its share of the cap, so neither this process nor
 * the server's backends keep an unbounded number of prepared statements.
 */
export class PreparePolicy {
  private readonly prepared = new Set<string>();
  private seen = new Set<string>();

  decide(text: string): boolean {
    if (this.prepared.has(text)) return true;
    if (this.prepared.size >= MAX_PREPARED_TEXTS) return false;
    if (!this.seen.has(text)) {
      if (this.seen.size >= MAX_SEEN_TEXTS) this.seen = new Set();
      this.seen.add(text);
      return false;
    }
    this.seen.delete(text);
    this.prepared.add(text);
    return true;
  }
}

type Unsafe = postgres.Sql['unsafe'];

/**
 * The pool as drizzle sees it, with the statements PreparePolicy picks prepared. drizzle runs
 * every query through `unsafe(text, params, { prepare: false })` unless it was built with
 * `.prepare(name)`, and postgres.js then parses and describes each parameterised statement
 * afresh, an extra round trip before every statement; this turns the named prepared statements
 * (postgres.js's own per-connection cache, DB_PREPARE) back on for them, in transactions too.
 */
function preparing<T extends object>(sql: T, policy: PreparePolicy): T {
  return new Proxy(sql, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      if (prop === 'unsafe') {
        const unsafe = value as Unsafe;
        return (text: string, params?: unknown[], opts?: { prepare?: boolean }) =>
          unsafe.call(target, text, params as never, {
            ...opts,
            prepare: (params?.length ?? 0) > 0 && policy.decide(text),
          });
      }
      if (prop === 'begin' || prop === 'savepoint' || prop === 'reserve') {
        // The connection handed to a transaction's callback (or reserved) prepares the same way.
        return (...args: unknown[]) => {
          const wrapped = args.map((a) =>
            typeof a === 'function'
              ? (inner: object, ...rest: unknown[]) =>
                  (a as (...x: unknown[]) => unknown)(preparing(inner, policy), ...rest)
              : a,
          );
          const out = (value as (...x: unknown[]) => unknown).apply(target, wrapped);
          return prop === 'reserve'
            ? (out as Promise<object>).then((c) => preparing(c, policy))
            : out;
        };
      }
      return value;
    },
  });
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

/** `{ name: table.name, … }`: a select's columns, named as the table names them. */
export function columnsOf<T extends object, K extends keyof T & string>(
  table: T,
  ...names: K[]
): Pick<T, K> {
  return Object.fromEntries(names.map((name) => [name, table[name]])) as Pick<T, K>;
}
