import { existsSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { sql as dsql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, queryRows, type DbHandle } from '../../src/adapters/db/client';
import { createTestDatabase } from '../support/db';
import { PG_BIN, startPrivatePostgres, type OwnPostgres } from '../support/private-postgres';

/**
 * A backend lost at the worst moments (pg_terminate_backend; a restart, a failover or
 * idle_in_transaction_session_timeout do the same to a connection), with pools of 1 and 4:
 * idle in a transaction, during a query, during COMMIT, between the statements of a pipelined
 * load, and while a LISTEN connection is open. Each case checks that
 *   - the caller gets an error or a correct result, and nothing stays pending;
 *   - the table holds all or none of the transaction's writes; a statement the transaction's
 *     callback issues after the loss is rejected, never run in autocommit on a new connection;
 *   - the next queries on the pool get their own results (`select n` answers n, in parallel);
 *   - nothing escapes as an uncaught exception or unhandled rejection.
 *
 * postgres.js 3.4.9 fails these (porsager/postgres#1154, #1155, #1186, #1208, #1215, #1216):
 * uncaught TypeError from a deferred write to the dropped socket; the callback's next statement
 * hangs, or runs in autocommit on the reconnected connection and its result reaches an unrelated
 * query; queries queued inside the transaction never settle. patches/postgres+3.4.9.patch fixes
 * them. The last cases check the limits createDb puts on its connections: statement_timeout,
 * idle_in_transaction_session_timeout, and the client-side response timeout (through a proxy
 * that stops forwarding, as a half-open connection does). `npm run test:pg-loss` runs this file
 * 20 times in a row.
 *
 * The server is a private one (initdb in a temp directory, test/support/private-postgres.ts):
 * terminating backends and its settings then touch nobody else. Where the PostgreSQL binaries
 * are missing (FAULTS_PG_BIN), the file falls back to its own database on the shared server;
 * pg_terminate_backend only ever targets this file's own backends, found by pid.
 */

/** A promise that should settle promptly after a loss (a hang fails the assertion, not the run). */
const SETTLE_MS = 10_000;

type Outcome<T> =
  | { readonly status: 'ok'; readonly value: T }
  | { readonly status: 'error'; readonly code: string }
  | { readonly status: 'pending' };

async function settle<T>(promise: Promise<T>, ms = SETTLE_MS): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'pending' }), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value): Outcome<T> => ({ status: 'ok', value }),
        (error: unknown): Outcome<T> => ({
          status: 'error',
          code: codeOf(error) ?? String(error),
        }),
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The SQLSTATE or driver code of an error, through drizzle's wrapping (`cause`). */
function codeOf(error: unknown): string | undefined {
  for (let e = error; e instanceof Error; e = (e as Error & { cause?: unknown }).cause) {
    const code = (e as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => Promise<boolean> | boolean, what: string, ms = SETTLE_MS) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
}

/** A gate a transaction's callback waits at (idle in the transaction) until the test opens it. */
function gate(): { wait(): Promise<void>; waiting: boolean; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  const g = {
    waiting: false,
    wait: () => ((g.waiting = true), promise),
    open: () => open(),
  };
  return g;
}

let server: OwnPostgres | undefined;
let dropShared: (() => Promise<void>) | undefined;
let url: string;
let admin: postgres.Sql;

beforeAll(async () => {
  if (existsSync(path.join(PG_BIN, 'initdb'))) {
    server = await startPrivatePostgres('ow-loss-');
    url = server.pg.url();
  } else {
    const t = await createTestDatabase({ migrated: false });
    url = t.url;
    dropShared = () => t.drop();
  }
  admin = postgres(url, { max: 1, onnotice: () => undefined });
  // `writes` gets the transactions' rows; a row with n = -1 makes COMMIT take 2 s (a deferred
  // constraint trigger runs at commit), so a backend can be terminated during COMMIT.
  await admin.unsafe(`
    create table writes (tx text not null, n int not null);
    create function slow_commit() returns trigger language plpgsql as
      $$ begin perform pg_sleep(2); return null; end $$;
    create constraint trigger slow_commit after insert on writes
      deferrable initially deferred for each row when (new.n = -1) execute function slow_commit();
  `);
}, 120_000);

afterAll(async () => {
  await admin?.end({ timeout: 5 });
  await server?.close();
  await dropShared?.();
});

/** Collects what escapes the driver during a test (both kill a production daemon). */
function watchEscapes(): { readonly escaped: unknown[]; stop(): void } {
  const escaped: unknown[] = [];
  const onError = (error: unknown) => escaped.push(error);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  return {
    escaped,
    stop: () => {
      process.off('uncaughtException', onError);
      process.off('unhandledRejection', onError);
    },
  };
}

let tags = 0;
const newTag = (name: string) => `${name}-${process.pid}-${++tags}`;

async function rowsOf(tag: string): Promise<number[]> {
  const rows = await admin<{ n: number }[]>`select n from writes where tx = ${tag} order by n`;
  return rows.map((r) => r.n);
}

/**
 * Failed because its connection was lost: the server's FATAL message (57P01 terminated by the
 * administrator, 25P03 idle-in-transaction timeout) when it arrived first, else the closed socket.
 */
function expectLost(outcome: Outcome<unknown> | undefined, fatal = '57P01') {
  expect(outcome?.status).toBe('error');
  expect([fatal, 'CONNECTION_CLOSED']).toContain(outcome?.status === 'error' && outcome.code);
}

/** All or none: the rows of a committed transaction, none of one that failed. */
async function expectAtomic(tag: string, outcome: Outcome<unknown>, all: number[]) {
  expect(outcome.status).not.toBe('pending');
  expect(await rowsOf(tag)).toEqual(outcome.status === 'ok' ? all : []);
}

/** Several distinct `select n` in parallel on the pool; each must get its own n back. */
async function expectOwnResults(sql: postgres.Sql, count = 6) {
  const base = 1000 + Math.floor(Math.random() * 1_000_000);
  const ns = Array.from({ length: count }, (_, i) => base + i);
  const outcomes = await Promise.all(
    ns.map((n) =>
      settle(sql<{ n: number }[]>`select ${n}::int as n`.then((r) => r.map((x) => x.n))),
    ),
  );
  expect(outcomes).toEqual(ns.map((n) => ({ status: 'ok', value: [n] })));
}

async function terminate(pid: number) {
  // With a timeout, pg_terminate_backend waits until the backend has exited (PostgreSQL 14+).
  const [row] = await admin<{ ok: boolean }[]>`select pg_terminate_backend(${pid}, 5000) as ok`;
  expect(row?.ok).toBe(true);
}

async function waitActive(pid: number, like: string) {
  await until(async () => {
    const rows = await admin`
      select 1 from pg_stat_activity where pid = ${pid} and state = 'active' and query like ${like}`;
    return rows.length > 0;
  }, `backend ${pid} running ${like}`);
}

function client(max: number): postgres.Sql {
  return postgres(url, {
    max,
    onnotice: () => undefined,
    connection: { application_name: 'loss' },
  });
}

/** Runs `fn` with a fresh pool of `max`, then checks nothing escaped and closes the pool. */
async function withPool(max: number, fn: (sql: postgres.Sql) => Promise<void>) {
  const watch = watchEscapes();
  const sql = client(max);
  try {
    await fn(sql);
    // Deferred driver work (setImmediate writes, reconnects) gets a moment to go wrong.
    await sleep(50);
    expect(watch.escaped).toEqual([]);
  } finally {
    watch.stop();
    await sql.end({ timeout: 5 });
  }
}

const PID = (q: postgres.TransactionSql) =>
  q<{ pid: number }[]>`select pg_backend_pid()::int as pid`.then((r) => r[0]?.pid);

describe.each([1, 4])('backend terminated, pool of %i', (max) => {
  it('idle in a transaction: begin() rejects, the next statement is rejected, not run alone', async () => {
    await withPool(max, async (sql) => {
      const tag = newTag('idle');
      const idle = gate();
      let pid: number | undefined;
      let late: Promise<unknown> | undefined;
      const tx = sql.begin(async (q) => {
        pid = await PID(q);
        await q`insert into writes (tx, n) values (${tag}, 1)`;
        await idle.wait();
        late = q`insert into writes (tx, n) values (${tag}, 2)`;
        await late;
        await q`insert into writes (tx, n) values (${tag}, 3)`;
      });
      const txOutcome = settle(tx);
      await until(() => idle.waiting, 'transaction idle');
      await terminate(pid!);
      expectLost(await txOutcome);
      // The callback goes on after begin() rejected; its next statement must fail too, also
      // while the pool reconnects for other queries (with a pool of 1, the same connection).
      idle.open();
      const probes = expectOwnResults(sql);
      await until(() => late !== undefined, 'late statement issued');
      const lateOutcome = await settle(late!);
      await probes;
      expect(lateOutcome).toEqual({ status: 'error', code: 'CONNECTION_CLOSED' });
      await expectAtomic(tag, await txOutcome, [1, 2, 3]);
      await expectOwnResults(sql);
    });
  });

  it('during a query: the query and begin() reject, a callback that goes on is rejected', async () => {
    await withPool(max, async (sql) => {
      const tag = newTag('query');
      let pid: number | undefined;
      let sleepOutcome: Outcome<unknown> | undefined;
      let late: Promise<unknown> | undefined;
      const tx = sql.begin(async (q) => {
        pid = await PID(q);
        await q`insert into writes (tx, n) values (${tag}, 1)`;
        // A careless callback that swallows the error and goes on writing.
        sleepOutcome = await settle(q`select pg_sleep(3)`);
        late = q`insert into writes (tx, n) values (${tag}, 2)`;
        await late;
      });
      const txOutcome = settle(tx);
      await until(() => pid !== undefined, 'transaction started');
      await waitActive(pid!, '%pg_sleep%');
      await terminate(pid!);
      expectLost(await txOutcome);
      const probes = expectOwnResults(sql);
      await until(() => late !== undefined, 'late statement issued');
      expectLost(sleepOutcome);
      expect(await settle(late!)).toEqual({ status: 'error', code: 'CONNECTION_CLOSED' });
      await probes;
      await expectAtomic(tag, await txOutcome, [1, 2]);
      await expectOwnResults(sql);
    });
  });

  it('during COMMIT: the caller learns the outcome and the table agrees with it', async () => {
    await withPool(max, async (sql) => {
      const tag = newTag('commit');
      let pid: number | undefined;
      const tx = sql.begin(async (q) => {
        pid = await PID(q);
        await q`insert into writes (tx, n) values (${tag}, -1)`;
        await q`insert into writes (tx, n) values (${tag}, 1)`;
      });
      const txOutcome = settle(tx);
      await until(() => pid !== undefined, 'transaction started');
      await waitActive(pid!, 'commit');
      await terminate(pid!);
      const outcome = await txOutcome;
      // Terminated inside the deferred trigger, before the commit record: rolled back.
      expectLost(outcome);
      await expectAtomic(tag, outcome, [-1, 1]);
      await expectOwnResults(sql);
    });
  });

  it('between the statements of a pipelined load: every statement settles, none commits', async () => {
    await withPool(max, async (sql) => {
      const tag = newTag('pipeline');
      let pid: number | undefined;
      const issued: Promise<unknown>[] = [];
      const tx = sql.begin(async (q) => {
        pid = await PID(q);
        // Issued without awaiting: some go out pipelined, the rest wait in the transaction's
        // own queue (a statement with parameters is described first, which holds the rest).
        for (let n = 1; n <= 4; n++)
          issued.push(q`insert into writes (tx, n) values (${tag}, ${n})`);
        issued.push(q`select pg_sleep(3)`);
        for (let n = 5; n <= 12; n++)
          issued.push(q`insert into writes (tx, n) values (${tag}, ${n})`);
        return Promise.all(issued);
      });
      const txOutcome = settle(tx);
      await until(() => pid !== undefined, 'transaction started');
      await waitActive(pid!, '%pg_sleep%');
      await terminate(pid!);
      expectLost(await txOutcome);
      const outcomes = await Promise.all(issued.map((p) => settle(p)));
      // The four inserts before the sleep had completed; everything from the sleep on failed.
      expect(outcomes.map((o) => o.status)).toEqual([
        ...Array<string>(4).fill('ok'),
        ...Array<string>(9).fill('error'),
      ]);
      await expectAtomic(tag, await txOutcome, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      await expectOwnResults(sql);
    });
  });

  it('a branch still running after a statement failed is refused, not run after ROLLBACK', async () => {
    await withPool(max, async (sql) => {
      const tag = newTag('branch');
      let late: Promise<unknown> | undefined;
      const tx = sql.begin(async (q) => {
        await q`insert into writes (tx, n) values (${tag}, 1)`;
        await Promise.all([
          q`select 1 / 0`,
          sleep(200).then(() => (late = q`insert into writes (tx, n) values (${tag}, 2)`)),
        ]);
      });
      const txOutcome = await settle(tx);
      expect(txOutcome).toEqual({ status: 'error', code: '22012' });
      await until(() => late !== undefined, 'late statement issued');
      expect(await settle(late!)).toEqual({ status: 'error', code: 'TRANSACTION_ENDED' });
      await expectAtomic(tag, txOutcome, [1, 2]);
      await expectOwnResults(sql);
    });
  });

  it('while a LISTEN connection is open: each loss stays on its own connection', async () => {
    await withPool(max, async (sql) => {
      const channel = `loss_${max}`;
      const heard: string[] = [];
      let listens = 0;
      await sql.listen(
        channel,
        (payload) => heard.push(payload),
        () => (listens += 1),
      );
      const [listener] = await admin<{ pid: number }[]>`
        select pid from pg_stat_activity
         where application_name = 'loss' and query = ${`listen "${channel}"`}`;
      expect(listener).toBeDefined();

      // 1. The listening backend dies while a transaction is open on the pool: the
      //    transaction commits, the listener listens again and hears what is sent after.
      const tag = newTag('listen');
      const idle = gate();
      const tx = sql.begin(async (q) => {
        await q`insert into writes (tx, n) values (${tag}, 1)`;
        await idle.wait();
        await q`insert into writes (tx, n) values (${tag}, 2)`;
      });
      const txOutcome = settle(tx);
      await until(() => idle.waiting, 'transaction idle');
      await terminate(listener!.pid);
      idle.open();
      expect((await txOutcome).status).toBe('ok');
      await expectAtomic(tag, await txOutcome, [1, 2]);
      await until(() => listens === 2, 'listening again');
      await admin`select pg_notify(${channel}, 'after-listener-loss')`;
      await until(() => heard.includes('after-listener-loss'), 'notification heard');

      // 2. A transaction's backend dies while the LISTEN connection is open: the transaction
      //    fails, the listener is untouched (no re-listen) and still hears.
      const tag2 = newTag('listen');
      let pid2: number | undefined;
      const idle2 = gate();
      const tx2 = sql.begin(async (q) => {
        pid2 = await PID(q);
        await q`insert into writes (tx, n) values (${tag2}, 1)`;
        await idle2.wait();
        await q`insert into writes (tx, n) values (${tag2}, 2)`;
      });
      const tx2Outcome = settle(tx2);
      await until(() => idle2.waiting, 'second transaction idle');
      await terminate(pid2!);
      idle2.open();
      expectLost(await tx2Outcome);
      await expectAtomic(tag2, await tx2Outcome, [1, 2]);
      await admin`select pg_notify(${channel}, 'after-tx-loss')`;
      await until(() => heard.includes('after-tx-loss'), 'notification heard');
      expect(listens).toBe(2);
      await expectOwnResults(sql);
    });
  });
});

describe('connection lost mid-transaction, repeatedly', () => {
  it('rejects each transaction and the pool keeps working', async () => {
    await withPool(2, async (sql) => {
      for (let round = 0; round < 5; round++) {
        let pid: number | undefined;
        const tx = sql.begin(async (q) => {
          pid = await PID(q);
          await q`select pg_sleep(5)`;
        });
        const outcome = settle(tx);
        await until(() => pid !== undefined, 'transaction started');
        await terminate(pid!);
        expectLost(await outcome);
        await expectOwnResults(sql, 2);
      }
    });
  });
});

/**
 * A TCP proxy to the server that can freeze: while frozen it forwards nothing either way but
 * keeps every socket open, as a network partition or a dead NAT entry does (no FIN, no RST).
 * A connection closed on one side is closed on the other.
 */
async function freezingProxy(target: URL) {
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = createConnection(Number(target.port || 5432), target.hostname);
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk) => frozen || to.write(chunk));
      from.on('error', () => undefined);
      from.on('close', () => (sockets.delete(from), to.destroy()));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const proxied = new URL(target);
  proxied.port = String(port);
  return {
    url: proxied.toString(),
    freeze: (on: boolean) => (frozen = on),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('limits createDb sets on its connections', () => {
  async function withHandle(
    target: string,
    options: Parameters<typeof createDb>[2],
    fn: (handle: DbHandle) => Promise<void>,
  ) {
    const watch = watchEscapes();
    const handle = await createDb(target, '/nonexistent-unused', options);
    try {
      await fn(handle);
      await sleep(50);
      expect(watch.escaped).toEqual([]);
    } finally {
      watch.stop();
      await handle.close();
    }
  }

  const ownResults = async (handle: DbHandle) => {
    const ns = [7, 8, 9, 10];
    const got = await Promise.all(
      ns.map((n) => queryRows<{ n: number }>(handle.db, dsql`select ${n}::int as n`)),
    );
    expect(got.map((rows) => rows[0]?.n)).toEqual(ns);
  };

  it('statement_timeout and idle_in_transaction_session_timeout hold from the first statement', async () => {
    await withHandle(url, { poolSize: 1 }, async (handle) => {
      const [row] = await queryRows<{ statement: string; idle: string }>(
        handle.db,
        dsql`select current_setting('statement_timeout') as statement,
                    current_setting('idle_in_transaction_session_timeout') as idle`,
      );
      expect(row).toEqual({ statement: '1min', idle: '1min' });
    });
    await withHandle(url, { poolSize: 1, statementTimeoutMs: 300 }, async (handle) => {
      const started = Date.now();
      const outcome = await settle(handle.db.execute(dsql`select pg_sleep(3)`));
      expect(outcome).toEqual({ status: 'error', code: '57014' }); // canceled by the server
      expect(Date.now() - started).toBeLessThan(2_500);
      await ownResults(handle);
    });
  });

  it('a transaction left idle is ended by the server; its next statement fails, none of it stays', async () => {
    await withHandle(url, { poolSize: 1, idleInTransactionTimeoutMs: 300 }, async (handle) => {
      const tag = newTag('idle-timeout');
      let late: Outcome<unknown> | undefined;
      const tx = handle.db.transaction(async (t) => {
        await t.execute(dsql`insert into writes (tx, n) values (${tag}, 1)`);
        await sleep(1_500);
        late = await settle(t.execute(dsql`insert into writes (tx, n) values (${tag}, 2)`));
      });
      const outcome = await settle(tx);
      expectLost(outcome, '25P03');
      await until(() => late !== undefined, 'late statement settled');
      expect(late).toEqual({ status: 'error', code: 'CONNECTION_CLOSED' });
      await expectAtomic(tag, outcome, [1, 2]);
      await ownResults(handle);
    });
  });

  it('a connection that stops answering (half-open) fails its queries after the response timeout', async () => {
    const proxy = await freezingProxy(new URL(url));
    try {
      await withHandle(proxy.url, { poolSize: 1, responseTimeoutMs: 1_000 }, async (handle) => {
        const tag = newTag('half-open');
        await ownResults(handle);
        const frozenAt = { ms: 0 };
        const tx = handle.db.transaction(async (t) => {
          await t.execute(dsql`insert into writes (tx, n) values (${tag}, 1)`);
          proxy.freeze(true);
          frozenAt.ms = Date.now();
          await t.execute(dsql`insert into writes (tx, n) values (${tag}, 2)`);
        });
        const outcome = await settle(tx);
        expect(outcome).toEqual({ status: 'error', code: 'RESPONSE_TIMEOUT' });
        expect(Date.now() - frozenAt.ms).toBeGreaterThanOrEqual(900);
        proxy.freeze(false);
        // The client dropped the connection, the proxy closed the server side: rolled back.
        await until(async () => (await rowsOf(tag)).length === 0, 'transaction rolled back');
        await expectAtomic(tag, outcome, [1, 2]);
        await ownResults(handle);
      });
    } finally {
      await proxy.close();
    }
  });
});
