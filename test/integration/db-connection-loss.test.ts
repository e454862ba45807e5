import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db';

/**
 * A connection cut while a transaction is in flight (a PostgreSQL restart or crash does this to
 * every connection). postgres.js 3.4.9 then writes its own ROLLBACK to a socket it has already
 * dropped, from a setImmediate callback: an uncaught TypeError that kills the daemon
 * (porsager/postgres#1154, #1208). It also keeps the dead socket's query and error response, so
 * the reconnect hands that stale error to the next query, and later queries on the pool hang.
 * patches/postgres+3.4.9.patch guards the write and clears that state when the socket closes.
 * Without the patch this file fails (uncaught error, stale 57P01, or a timeout).
 */

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase({ migrated: false });
});

afterAll(async () => {
  await t?.drop();
});

const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);

describe('connection lost mid-transaction', () => {
  it('rejects the transaction and the pool keeps working', async () => {
    process.on('uncaughtException', onUncaught);
    const sql = postgres(t.url, { max: 2, onnotice: () => undefined });
    try {
      for (let round = 0; round < 5; round++) {
        let pid: number | undefined;
        const tx = sql.begin(async (q) => {
          const [row] = await q<{ pid: number }[]>`select pg_backend_pid() as pid`;
          pid = row?.pid;
          await q`select pg_sleep(5)`;
        });
        const outcome = tx.then(
          () => 'committed',
          (error: Error & { code?: string }) => error.code ?? error.message,
        );
        while (pid === undefined) await new Promise((r) => setTimeout(r, 10));
        await t.raw`select pg_terminate_backend(${pid})`;
        // Terminated by the administrator (57P01) or seen as a closed socket, depending on which
        // of the two the driver reads first; never a commit.
        expect(['57P01', 'CONNECTION_CLOSED', 'CONNECTION_ENDED']).toContain(await outcome);
        // Give the driver's deferred writes (setImmediate) time to run.
        await new Promise((r) => setTimeout(r, 50));
        const [row] = await sql<{ one: number }[]>`select 1 as one`;
        expect(row?.one).toBe(1);
      }
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await sql.end({ timeout: 5 });
    }
  });
});
