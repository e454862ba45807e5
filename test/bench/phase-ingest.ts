/**
 * Benchmark part (run.ts): the billing system's ingest over HTTP. A database of its own with
 * BENCH_INGEST_ACCOUNTS accounts, a daemon child listening on loopback with an ingest token, and
 * one client posting batches of BENCH_INGEST_BATCH items, one request at a time (as a billing
 * system's daily run would):
 *
 * - bills: BENCH_INGEST_ITEMS new bills (due in a week), then payments: the same number, one
 *   per bill, without naming it (the allocator pays the account's oldest unpaid bill first);
 * - baseline, same run, same database: a bare multi-row INSERT of the same rows (same sizes,
 *   fresh ids, an account set of their own) into the same tables from this process (postgres.js,
 *   one statement per batch, with the tables' triggers), the NOTIFY muted as ingest mutes it.
 *
 * - the ingest store alone, same run: the route's statements called from this process (no HTTP,
 *   no evaluations queued), on a third account set.
 *
 * Items per second = items / wall time of all batches; the ratio is HTTP / bare. A payment batch
 * queues the evaluation of its accounts, so over HTTP the payment rate also carries the daemon's
 * evaluation work for them (the store figure does not).
 */
import { createServer } from 'node:net';
import postgres from 'postgres';
import { createDb } from '../../src/adapters/db/client';
import { bodyHash, ingestBills, ingestPayments } from '../../src/adapters/db/ingest-store';
import { migrate } from '../../src/adapters/db/migrate';
import { startFakeControlPlane } from '../support/control-plane-server';
import { deleteKeys } from '../support/daemon';
import type { IngestResult } from './report';
import { log, round, waitUntil, type BenchContext, type DaemonHandle } from './common';

const TOKEN = 'bench-ingest-token-0123456789abcdef0123';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export async function ingestPhase(
  ctx: BenchContext,
  o: { accounts: number; items: number; batch: number },
): Promise<IngestResult> {
  const db = await ctx.createDatabase('ingest');
  const prefix = ctx.prefix('ingest');
  const setup = await createDb(db.url, '/unused', { poolSize: 2 });
  await migrate(setup.db);
  await setup.close();
  const sql = postgres(db.url, { max: 2, onnotice: () => undefined });
  const cp = await startFakeControlPlane();
  const port = await freePort();
  let daemon: DaemonHandle | undefined;
  try {
    // ia-*: the accounts of the HTTP run; ib-*: the bare INSERTs' own; ic-*: the store's own.
    // A healthy balance: the daemon's start-up scan finds nothing to do (no low-balance storm).
    await sql`
      insert into accounts (id, currency, email, available_balance_minor)
      select p || lpad(i::text, 6, '0'), 'USD', p || i || '@example.com', 100000000
        from generate_series(1, ${o.accounts}) as i, (values ('ia-'), ('ib-'), ('ic-')) as v(p)`;
    daemon = ctx.startDaemon({
      url: db.url,
      prefix,
      cp,
      label: 'ingest',
      env: { PORT: String(port), HOST: '127.0.0.1', API_TOKENS: `billing=${TOKEN}` },
    });
    const base = `http://127.0.0.1:${port}`;
    await waitUntil(
      'ingest daemon answers',
      async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok === true,
      60_000,
    );

    const accountOf = (i: number) => `ia-${String((i % o.accounts) + 1).padStart(6, '0')}`;
    const now = Date.now();
    const issuedAt = new Date(now - 86_400_000).toISOString();
    const dueAt = new Date(now + 7 * 86_400_000).toISOString();
    const billsOf = (tag: string) =>
      Array.from({ length: o.items }, (_, i) => ({
        id: `${tag}-${i}`,
        accountId: accountOf(i),
        version: 1,
        product: 'live',
        amountMinor: 1_000 + (i % 97),
        issuedAt,
        dueAt,
      }));
    const paymentsOf = (tag: string) =>
      Array.from({ length: o.items }, (_, i) => ({
        id: `${tag}-${i}`,
        accountId: accountOf(i),
        version: 1,
        amountMinor: 1_000 + (i % 97),
      }));
    const chunks = <T>(rows: T[]) =>
      Array.from({ length: Math.ceil(rows.length / o.batch) }, (_, k) =>
        rows.slice(k * o.batch, (k + 1) * o.batch),
      );

    /** Runs `each` over the batches of `rows`; items per second over the whole run. */
    const timed = async <T>(rows: T[], each: (part: T[]) => Promise<unknown>) => {
      const started = performance.now();
      for (const part of chunks(rows)) await each(part);
      const seconds = (performance.now() - started) / 1000;
      return {
        items: rows.length,
        seconds: round(seconds, 2),
        perSecond: round(rows.length / seconds, 0),
      };
    };

    const overHttp = (url: string, key: string, rows: object[]) =>
      timed(rows, async (part) => {
        const res = await fetch(`${base}${url}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ [key]: part }),
        });
        if (res.status !== 202) {
          throw new Error(`${url} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
        }
      });

    const bare = (table: 'bills' | 'payments', rows: Record<string, unknown>[]) =>
      timed(rows, (part) =>
        sql.begin(async (tx) => {
          await tx`select set_config('overdue_worker.origin', 'daemon', true)`;
          await tx`insert into ${tx(table)} ${tx(part)}`;
        }),
      );
    const billRows = (tag: string) =>
      billsOf(tag).map((b) => ({
        id: b.id,
        account_id: b.accountId.replace('ia-', 'ib-'),
        product: b.product,
        amount_minor: b.amountMinor,
        issued_at: b.issuedAt,
        due_at: b.dueAt,
        source_version: 1,
      }));
    const paymentRows = (tag: string) =>
      paymentsOf(tag).map((p) => ({
        id: p.id,
        account_id: p.accountId.replace('ia-', 'ib-'),
        amount_minor: p.amountMinor,
        allocations: sql.json([]),
        source_version: 1,
      }));

    // The ingest store called in this process (same statements as the route, no HTTP, no
    // evaluations queued): what the ingest itself costs, apart from the daemon's other work.
    const store = await createDb(db.url, '/unused', { poolSize: 2 });
    const options = { statementTimeoutMs: 60_000, now: new Date(), actor: 'bench' };
    const own = (accountId: string) => accountId.replace('ia-', 'ic-');
    const storeBillsOf = (tag: string) =>
      timed(billsOf(tag), (part) =>
        ingestBills(
          store.db,
          part.map((b) => ({
            ...b,
            accountId: own(b.accountId),
            hash: bodyHash(b),
            issuedAt: new Date(b.issuedAt),
            dueAt: new Date(b.dueAt),
            void: false,
          })),
          options,
        ),
      );
    const storePaymentsOf = (tag: string) =>
      timed(paymentsOf(tag), (part) =>
        ingestPayments(
          store.db,
          part.map((p) => ({ ...p, accountId: own(p.accountId), billId: null, hash: bodyHash(p) })),
          options,
        ),
      );

    log(`ingest: ${o.items} bills and ${o.items} payments over HTTP in batches of ${o.batch}`);
    const bareBills = await bare('bills', billRows('bare-b'));
    const storeBills = await storeBillsOf('store-b');
    const httpBills = await overHttp('/v1/ingest/bills', 'bills', billsOf('http-b'));
    const barePayments = await bare('payments', paymentRows('bare-p'));
    const storePayments = await storePaymentsOf('store-p');
    const httpPayments = await overHttp('/v1/ingest/payments', 'payments', paymentsOf('http-p'));
    await store.close();
    // The HTTP payments paid the HTTP bills: each account's bills, oldest first.
    const [paid] = await sql<{ n: number }[]>`
      select count(*)::int as n from bills where id like 'http-b-%' and status = 'paid'`;
    const result: IngestResult = {
      accounts: o.accounts,
      batch: o.batch,
      bills: { http: httpBills, store: storeBills, bare: bareBills },
      payments: { http: httpPayments, store: storePayments, bare: barePayments },
      httpBillsPaid: paid?.n ?? 0,
    };
    log(`ingest: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await daemon?.stop();
    await cp.close().catch(() => undefined);
    await sql.end({ timeout: 5 }).catch(() => undefined);
    await deleteKeys(ctx.redis, prefix).catch(() => undefined);
    await db.drop();
  }
}
