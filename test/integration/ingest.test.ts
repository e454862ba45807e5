/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migrate, MIGRATIONS_FOLDER } from '../../src/adapters/db/migrate';
import { buildHttpServer } from '../../src/http/server';
import { createTestDatabase, pgError } from '../support/db';
import { startHarness, waitFor, type Harness } from '../support/daemon';
import { PrivateRedis } from '../support/private-redis';

/**
 * The billing system's boundary as a billing system uses it: the real HTTP server, the real
 * PostgreSQL, Redis and daemon, a control-plane webhook on loopback. Each test is named after
 * the guarantee it checks.
 */

const TOKEN = 'billing-token-0123456789abcdef0123456789';
const asBilling = { authorization: `Bearer ${TOKEN}` };
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();
/** Fixed instants, so that a re-sent body is the same body. */
const NOW = Date.now();

let h: Harness;
let app: FastifyInstance;

async function post(url: string, payload: object, opts: Partial<InjectOptions> = {}) {
  const res = await app.inject({ method: 'POST', url, headers: asBilling, payload, ...opts });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
}

beforeAll(async () => {
  h = await startHarness({ API_TOKENS: `billing=${TOKEN}` });
  app = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await h?.stop();
});

/** An account whose protection quota is zero (any overdue amount suspends), with one streaming service. */
async function strictAccount(id: string, extra: object = {}) {
  const res = await post('/v1/ingest/accounts', {
    accounts: [
      {
        id,
        version: 1,
        currency: 'USD',
        email: `${id}@example.com`,
        protection: { amountMinor: 0 },
        ...extra,
      },
    ],
  });
  expect(res.status).toBe(202);
  const svc = await post('/v1/ingest/services', {
    services: [{ id: `${id}-s`, accountId: id, version: 1, kind: 'streaming' }],
  });
  expect(svc.status).toBe(202);
}

function overdueBill(id: string, accountId: string, version: number, amountMinor = 5_000) {
  return {
    id,
    accountId,
    version,
    product: 'live',
    amountMinor,
    issuedAt: iso(NOW - 10 * 24 * HOUR),
    dueAt: iso(NOW - 24 * HOUR),
  };
}

async function billRow(id: string) {
  const [row] = await h.t.raw<{ amount: number; paid: number; status: string; version: number }[]>`
    select amount_minor::int as amount, paid_minor::int as paid, status, source_version::int as version
      from bills where id = ${id}`;
  return row;
}

async function balance(accountId: string) {
  const [row] = await h.t.raw<{ b: number }[]>`
    select available_balance_minor::int as b from accounts where id = ${accountId}`;
  return row?.b;
}

const calls = (serviceId: string, op: string) =>
  h.cp.calls.filter((c) => c.serviceId === serviceId && c.op === op).length;

describe('ingest semantics', () => {
  it('re-posted bill after payment stays paid', async () => {
    await strictAccount('rp');
    expect((await post('/v1/ingest/bills', { bills: [overdueBill('rp-b', 'rp', 1)] })).status).toBe(
      202,
    );
    await waitFor(() => calls('rp-s', 'suspend') === 1, 10_000, 'suspended');
    const paid = await post('/v1/ingest/payments', {
      payments: [{ id: 'rp-p', accountId: 'rp', version: 1, amountMinor: 5_000 }],
    });
    expect(paid.status).toBe(202);
    await waitFor(() => calls('rp-s', 'resume') === 1, 10_000, 'resumed');

    // The billing system retries the same bill, then sends a newer version of it (a new due date).
    const retry = await post('/v1/ingest/bills', { bills: [overdueBill('rp-b', 'rp', 1)] });
    expect(retry).toMatchObject({
      status: 200,
      body: { bills: [{ id: 'rp-b', result: 'duplicate' }] },
    });
    const revised = await post('/v1/ingest/bills', {
      bills: [{ ...overdueBill('rp-b', 'rp', 2), dueAt: iso(Date.now() - 2 * HOUR) }],
    });
    expect(revised).toMatchObject({
      status: 202,
      body: { bills: [{ id: 'rp-b', result: 'updated' }] },
    });
    expect(await billRow('rp-b')).toEqual({
      amount: 5_000,
      paid: 5_000,
      status: 'paid',
      version: 2,
    });

    // Nothing is suspended again: evaluate now and give the effects time to show.
    await h.daemon.evaluateSoon('rp', 'test');
    await new Promise((r) => setTimeout(r, 1_500));
    expect(calls('rp-s', 'suspend')).toBe(1);
    const [acct] = await h.t.raw<{ state: string }[]>`
      select enforcement_state as state from accounts where id = 'rp'`;
    expect(acct?.state).toBe('active');
  });

  it('out-of-order versions: nothing older overwrites something newer', async () => {
    await strictAccount('oo', { protection: { amountMinor: 1_000_000 } });
    const v3 = { ...overdueBill('oo-b', 'oo', 3), amountMinor: 300 };
    const v2 = { ...overdueBill('oo-b', 'oo', 2), amountMinor: 200 };
    expect((await post('/v1/ingest/bills', { bills: [v3] })).status).toBe(202);
    const late = await post('/v1/ingest/bills', { bills: [v2] });
    expect(late.status).toBe(409);
    expect(late.body.issues).toEqual([
      expect.objectContaining({ path: 'body.bills.0.version', id: 'oo-b', storedVersion: 3 }),
    ]);
    expect(await billRow('oo-b')).toMatchObject({ amount: 300, version: 3 });

    // A batch carrying both versions, older last: the newer one stands.
    const v4 = { ...v3, version: 4, amountMinor: 400 };
    const both = await post('/v1/ingest/bills', { bills: [v4, { ...v2, version: 3 }] });
    expect(both.status).toBe(409);
    expect(await billRow('oo-b')).toMatchObject({ amount: 300, version: 3 });

    // Writers of the tables are held to the same rule by a trigger.
    const lowered = await pgError(
      () => h.t.raw`update bills set source_version = 1, amount_minor = 100 where id = 'oo-b'`,
    );
    expect(lowered).toEqual({ code: '23514', constraint: 'bills_source_version_never_lowered' });
  });

  it('same id other body → 409', async () => {
    await strictAccount('sb', { protection: { amountMinor: 1_000_000 } });
    const cases: [string, string, object, object][] = [
      [
        '/v1/ingest/payments',
        'payments',
        { id: 'sb-p', accountId: 'sb', version: 1, amountMinor: 100 },
        { amountMinor: 101 },
      ],
      [
        '/v1/ingest/topups',
        'topups',
        { id: 'sb-t', accountId: 'sb', version: 1, amountMinor: 100 },
        { amountMinor: 99 },
      ],
      [
        '/v1/ingest/usage',
        'records',
        {
          accountId: 'sb',
          sourceId: 'sb-u',
          version: 1,
          product: 'live',
          metric: 'minutes',
          quantity: 3,
          recordedAt: iso(Date.now()),
        },
        { quantity: 4 },
      ],
      [
        '/v1/ingest/services',
        'services',
        { id: 'sb-s2', accountId: 'sb', version: 1, kind: 'recording' },
        { kind: 'screenshots' },
      ],
    ];
    for (const [url, key, body, change] of cases) {
      expect((await post(url, { [key]: [body] })).status, url).toBe(202);
      expect((await post(url, { [key]: [body] })).status, url).toBe(200);
      const other = await post(url, { [key]: [{ ...body, ...change }] });
      expect(other.status, url).toBe(409);
      expect(other.body.error, url).toBe('version-conflict');
      expect(other.body.issues[0], url).toMatchObject({ storedVersion: 1 });
    }
    // Nothing of the refused bodies was stored: the balance holds the first payment and top-up.
    expect(await balance('sb')).toBe(200);

    const plan = {
      id: 'sb-plan',
      accountId: 'sb',
      version: 1,
      kind: 'minutes',
      totalUnits: 100,
      startsAt: iso(Date.now()),
      expiresAt: iso(Date.now() + 30 * 24 * HOUR),
    };
    expect((await post('/v1/ingest/plans', plan)).status).toBe(201);
    expect((await post('/v1/ingest/plans', plan)).body).toMatchObject({ duplicate: true });
    expect((await post('/v1/ingest/plans', { ...plan, totalUnits: 50 })).status).toBe(409);
    const newer = await post('/v1/ingest/plans', { ...plan, version: 2, totalUnits: 50 });
    expect(newer).toMatchObject({ status: 200, body: { created: false, duplicate: false } });
    const [row] = await h.t.raw<{ total: number }[]>`
      select total_units::int as total from resource_plans where id = 'sb-plan'`;
    expect(row?.total).toBe(50);
  });

  it('same id other account → 409', async () => {
    await strictAccount('oa1', { protection: { amountMinor: 1_000_000 } });
    await strictAccount('oa2', { protection: { amountMinor: 1_000_000 } });
    expect(
      (await post('/v1/ingest/bills', { bills: [overdueBill('oa-b', 'oa1', 1)] })).status,
    ).toBe(202);
    const res = await post('/v1/ingest/bills', {
      bills: [overdueBill('oa-ok', 'oa2', 1), overdueBill('oa-b', 'oa2', 2)],
    });
    expect(res.status).toBe(409);
    expect(res.body.issues).toEqual([
      expect.objectContaining({ path: 'body.bills.1.accountId', id: 'oa-b' }),
    ]);
    // All or nothing: the good item of the refused batch was not stored either.
    expect(await billRow('oa-ok')).toBeUndefined();
    const pay = await post('/v1/ingest/payments', {
      payments: [{ id: 'oa-p', accountId: 'oa1', version: 1, amountMinor: 1 }],
    });
    expect(pay.status).toBe(202);
    const stolen = await post('/v1/ingest/payments', {
      payments: [{ id: 'oa-p', accountId: 'oa2', version: 2, amountMinor: 1 }],
    });
    expect(stolen.status).toBe(409);
  });

  it('void bill → 422', async () => {
    await strictAccount('vb', { protection: { amountMinor: 1_000_000 } });
    const bill = overdueBill('vb-b', 'vb', 1, 1_000);
    await post('/v1/ingest/bills', { bills: [bill] });
    const part = await post('/v1/ingest/payments', {
      payments: [{ id: 'vb-p1', accountId: 'vb', version: 1, amountMinor: 400, billId: 'vb-b' }],
    });
    expect(part.body.payments[0]).toMatchObject({
      allocations: [{ billId: 'vb-b', amountMinor: 400 }],
      balanceCreditMinor: 0,
    });
    // Voiding a bill hands what was paid on it to the balance.
    const voided = await post('/v1/ingest/bills', {
      bills: [{ ...bill, version: 2, status: 'void' }],
    });
    expect(voided.status).toBe(202);
    expect(await billRow('vb-b')).toMatchObject({ paid: 0, status: 'void' });
    expect(await balance('vb')).toBe(400);

    const refused = await post('/v1/ingest/payments', {
      payments: [{ id: 'vb-p2', accountId: 'vb', version: 1, amountMinor: 100, billId: 'vb-b' }],
    });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({ error: 'payment-refused' });
    expect(refused.body.issues[0]).toMatchObject({
      path: 'body.payments.0.billId',
      message: expect.stringContaining('void'),
    });
    expect(await balance('vb')).toBe(400);
  });

  it('overpayment → balance', async () => {
    await strictAccount('op', { protection: { amountMinor: 1_000_000 } });
    await post('/v1/ingest/bills', {
      bills: [overdueBill('op-b1', 'op', 1, 1_000), overdueBill('op-b2', 'op', 1, 2_000)],
    });
    const res = await post('/v1/ingest/payments', {
      payments: [
        { id: 'op-p1', accountId: 'op', version: 1, amountMinor: 1_500, billId: 'op-b1' },
        // Names a bill the first payment already paid: all of it goes to the balance.
        { id: 'op-p2', accountId: 'op', version: 1, amountMinor: 300, billId: 'op-b1' },
      ],
    });
    expect(res.body.payments).toEqual([
      {
        id: 'op-p1',
        result: 'created',
        allocations: [{ billId: 'op-b1', amountMinor: 1_000 }],
        balanceCreditMinor: 500,
      },
      { id: 'op-p2', result: 'created', allocations: [], balanceCreditMinor: 300 },
    ]);
    expect(await billRow('op-b1')).toMatchObject({ paid: 1_000, status: 'paid' });
    expect(await billRow('op-b2')).toMatchObject({ paid: 0, status: 'unpaid' });
    expect(await balance('op')).toBe(800);

    // Lowering a paid bill's amount credits the difference to the balance.
    await post('/v1/ingest/bills', { bills: [{ ...overdueBill('op-b1', 'op', 2, 600) }] });
    expect(await billRow('op-b1')).toMatchObject({ amount: 600, paid: 600, status: 'paid' });
    expect(await balance('op')).toBe(1_200);
  });

  it('reversal', async () => {
    await strictAccount('rv');
    await post('/v1/ingest/bills', { bills: [overdueBill('rv-b', 'rv', 1, 1_000)] });
    await waitFor(() => calls('rv-s', 'suspend') === 1, 10_000, 'suspended');
    await post('/v1/ingest/payments', {
      payments: [{ id: 'rv-p', accountId: 'rv', version: 1, amountMinor: 1_200 }],
    });
    await waitFor(() => calls('rv-s', 'resume') === 1, 10_000, 'resumed');
    expect(await balance('rv')).toBe(200);

    // Table writers cannot lower a paid amount.
    const direct = await pgError(() => h.t.raw`update bills set paid_minor = 0 where id = 'rv-b'`);
    expect(direct).toEqual({ code: '23514', constraint: 'bills_paid_lowered_only_by_reversal' });

    const reversal = {
      id: 'rv-r',
      accountId: 'rv',
      version: 1,
      paymentId: 'rv-p',
      reason: 'chargeback',
    };
    const res = await post('/v1/ingest/payment-reversals', { reversals: [reversal] });
    expect(res.status).toBe(202);
    expect(await billRow('rv-b')).toMatchObject({ paid: 0, status: 'unpaid' });
    expect(await balance('rv')).toBe(0);
    // The bounced payment makes the account overdue again: suspended again.
    await waitFor(() => calls('rv-s', 'suspend') === 2, 10_000, 'suspended again');

    expect((await post('/v1/ingest/payment-reversals', { reversals: [reversal] })).status).toBe(
      200,
    );
    const twice = await post('/v1/ingest/payment-reversals', {
      reversals: [{ ...reversal, id: 'rv-r2' }],
    });
    expect(twice.status).toBe(422);
    expect(twice.body.issues[0].message).toContain('already reversed');
    const changed = await post('/v1/ingest/payments', {
      payments: [{ id: 'rv-p', accountId: 'rv', version: 2, amountMinor: 1 }],
    });
    expect(changed.status).toBe(409);
    expect(await billRow('rv-b')).toMatchObject({ paid: 0 });
  });

  it('a newer version of a payment is allocated afresh', async () => {
    await strictAccount('np', { protection: { amountMinor: 1_000_000 } });
    await post('/v1/ingest/bills', { bills: [overdueBill('np-b', 'np', 1, 1_000)] });
    await post('/v1/ingest/payments', {
      payments: [{ id: 'np-p', accountId: 'np', version: 1, amountMinor: 1_500 }],
    });
    expect([await billRow('np-b'), await balance('np')]).toEqual([
      expect.objectContaining({ paid: 1_000 }),
      500,
    ]);
    const res = await post('/v1/ingest/payments', {
      payments: [{ id: 'np-p', accountId: 'np', version: 2, amountMinor: 600 }],
    });
    expect(res.body.payments[0]).toMatchObject({ result: 'updated', balanceCreditMinor: 0 });
    expect([await billRow('np-b'), await balance('np')]).toEqual([
      expect.objectContaining({ paid: 600, status: 'unpaid' }),
      0,
    ]);
  });

  it('contact changes never reset enforcement state', async () => {
    await strictAccount('cc');
    await post('/v1/ingest/bills', { bills: [overdueBill('cc-b', 'cc', 1)] });
    await waitFor(() => calls('cc-s', 'suspend') === 1, 10_000, 'suspended');
    const before = await h.t.raw`
      select enforcement_state, episode_seq, episode_started_at from accounts where id = 'cc'`;
    const res = await post('/v1/ingest/accounts', {
      accounts: [
        {
          id: 'cc',
          version: 2,
          currency: 'USD',
          email: 'new-cc@example.com',
          protection: { amountMinor: 0 },
          openingBalanceMinor: 999_999,
        },
      ],
    });
    expect(res.status).toBe(202);
    const after = await h.t.raw`
      select enforcement_state, episode_seq, episode_started_at from accounts where id = 'cc'`;
    expect(after).toEqual(before);
    expect(await balance('cc')).toBe(0);
    const [row] = await h.t.raw<{ email: string }[]>`select email from accounts where id = 'cc'`;
    expect(row?.email).toBe('new-cc@example.com');
    const currency = await post('/v1/ingest/accounts', {
      accounts: [{ id: 'cc', version: 3, currency: 'EUR' }],
    });
    expect(currency.status).toBe(422);
  });

  it('studio instances, SDK licenses and orders are ingestible', async () => {
    await strictAccount('ix', { protection: { amountMinor: 1_000_000 } });
    await post('/v1/ingest/services', {
      services: [
        { id: 'ix-studio', accountId: 'ix', version: 1, kind: 'studio', planType: 'duration' },
      ],
    });
    const inst = await post('/v1/ingest/studio-instances', {
      instances: [
        { id: 'ix-i', accountId: 'ix', version: 1, serviceId: 'ix-studio', name: 'Stage' },
      ],
    });
    expect(inst.status).toBe(202);
    const lic = await post('/v1/ingest/sdk-licenses', {
      licenses: [{ id: 'ix-l', accountId: 'ix', version: 1, kind: 'license' }],
    });
    expect(lic.status).toBe(202);
    const order = {
      id: 'ix-o',
      accountId: 'ix',
      version: 1,
      productType: 'sdk-license',
      cashPaidMinor: 900,
      sdkLicenseId: 'ix-l',
      createdAt: iso(Date.now() - 24 * HOUR),
    };
    expect((await post('/v1/ingest/orders', { orders: [order] })).status).toBe(202);
    const activated = await post('/v1/ingest/sdk-licenses', {
      licenses: [
        { id: 'ix-l', accountId: 'ix', version: 2, kind: 'license', activatedAt: iso(Date.now()) },
      ],
    });
    expect(activated.body.licenses[0].result).toBe('updated');
    const quote = await app.inject({
      method: 'GET',
      url: '/v1/orders/ix-o/refund-quote',
      headers: asBilling,
    });
    expect(quote.statusCode).toBe(200);
    expect(JSON.parse(quote.body)).toMatchObject({ refundable: false });
  });
});

describe('concurrency and outages', () => {
  it('two concurrent batches over the same 200 accounts in opposite orders finish without a deadlock', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `cb-${String(i).padStart(3, '0')}`);
    const accounts = ids.map((id) => ({
      id,
      version: 1,
      currency: 'USD',
      protection: { amountMinor: 1_000_000_000 },
    }));
    expect((await post('/v1/ingest/accounts', { accounts })).status).toBe(202);
    const bills = ids.map((id) => overdueBill(`${id}-b`, id, 1, 1_000));
    expect((await post('/v1/ingest/bills', { bills })).status).toBe(202);
    for (let round = 0; round < 3; round++) {
      const pay = (order: string[], tag: string) =>
        post('/v1/ingest/payments', {
          payments: order.map((id) => ({
            id: `${id}-${tag}-${round}`,
            accountId: id,
            version: 1,
            amountMinor: 100,
          })),
        });
      const [a, b] = await Promise.all([pay(ids, 'a'), pay([...ids].reverse(), 'b')]);
      expect([a.status, b.status]).toEqual([202, 202]);
    }
    const [sum] = await h.t.raw<{ paid: number }[]>`
      select sum(paid_minor)::int as paid from bills where id like 'cb-%'`;
    // 3 rounds × 2 batches × 100 per account, every payment applied once.
    expect(sum?.paid).toBe(200 * 600);
  });

  it('Redis stopped → 202 and the account is evaluated after Redis is back', async () => {
    const redisDir = mkdtempSync(path.join(tmpdir(), 'ow-redis-'));
    const redis = await PrivateRedis.start(redisDir);
    const r = await startHarness({ API_TOKENS: `billing=${TOKEN}`, REDIS_URL: redis.url });
    const server = await buildHttpServer({ daemon: r.daemon, logger: pino({ level: 'silent' }) });
    await server.ready();
    const send = async (url: string, payload: object) => {
      const res = await server.inject({ method: 'POST', url, headers: asBilling, payload });
      return { status: res.statusCode, body: JSON.parse(res.body) };
    };
    try {
      await send('/v1/ingest/accounts', {
        accounts: [{ id: 'rd', version: 1, currency: 'USD', protection: { amountMinor: 0 } }],
      });
      await send('/v1/ingest/services', {
        services: [{ id: 'rd-s', accountId: 'rd', version: 1, kind: 'streaming' }],
      });
      await send('/v1/ingest/bills', { bills: [overdueBill('rd-b', 'rd', 1)] });
      const suspended = () =>
        r.cp.calls.filter((c) => c.serviceId === 'rd-s' && c.op === 'suspend');
      await waitFor(() => suspended().length === 1, 10_000, 'suspended');

      // While Redis is away nothing writes raw errors past the structured logger.
      const stderr = vi.spyOn(console, 'error');
      await redis.stop();
      const started = Date.now();
      const paid = await send('/v1/ingest/payments', {
        payments: [{ id: 'rd-p', accountId: 'rd', version: 1, amountMinor: 5_000 }],
      });
      expect(paid.status).toBe(202);
      expect(paid.body.evaluationQueued).toBe(false);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await r.t.raw`select 1 from payments where id = 'rd-p'`).toHaveLength(1);

      await new Promise((r) => setTimeout(r, 1_000));
      expect(stderr).not.toHaveBeenCalled();
      stderr.mockRestore();
      await redis.restart();
      await waitFor(
        () => r.cp.calls.some((c) => c.serviceId === 'rd-s' && c.op === 'resume'),
        20_000,
        'resumed after Redis is back',
      );
    } finally {
      await server.close();
      await r.stop().catch(() => undefined);
      await redis.stop();
      rmSync(redisDir, { recursive: true, force: true });
    }
  });
});

describe('migration 0006', () => {
  it('payments and top-ups recorded before it are duplicates, not applied again', async () => {
    // A database at migration 0005 with a payment and a top-up recorded the old way (events only).
    const dir = mkdtempSync(path.join(tmpdir(), 'ow-migrations-'));
    const t = await createTestDatabase({ migrated: false });
    try {
      cpSync(MIGRATIONS_FOLDER, dir, { recursive: true });
      const journalPath = path.join(dir, 'meta', '_journal.json');
      const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as {
        entries: { tag: string }[];
      };
      const upTo0005 = journal.entries.filter((e) => e.tag < '0006');
      writeFileSync(journalPath, JSON.stringify({ ...journal, entries: upTo0005 }));
      await migrate(t.db, dir);
      await t.raw`insert into accounts (id, currency, available_balance_minor) values ('old', 'USD', 700)`;
      await t.raw`insert into enforcement_events (account_id, kind, detail, idempotency_key) values
        ('old', 'payment-received', '{"paymentId":"old-p","amountMinor":500,"billId":null}', 'payment-v1-old-p'),
        ('old', 'topup-received', '{"topupId":"old-t","amountMinor":200}', 'topup-v1-old-t')`;
      await migrate(t.db);

      const r = await startHarness({ API_TOKENS: `billing=${TOKEN}` }, { database: t.handle });
      const server = await buildHttpServer({ daemon: r.daemon, logger: pino({ level: 'silent' }) });
      try {
        const send = async (url: string, payload: object) =>
          (await server.inject({ method: 'POST', url, headers: asBilling, payload })).statusCode;
        expect(
          await send('/v1/ingest/payments', {
            payments: [{ id: 'old-p', accountId: 'old', version: 0, amountMinor: 500 }],
          }),
        ).toBe(200);
        expect(
          await send('/v1/ingest/topups', {
            topups: [{ id: 'old-t', accountId: 'old', version: 0, amountMinor: 200 }],
          }),
        ).toBe(200);
        expect(
          await send('/v1/ingest/topups', {
            topups: [{ id: 'old-t', accountId: 'old', version: 0, amountMinor: 300 }],
          }),
        ).toBe(409);
        const [row] = await t.raw<{ b: number }[]>`
          select available_balance_minor::int as b from accounts where id = 'old'`;
        expect(row?.b).toBe(700);
      } finally {
        await server.close();
        await r.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await t.drop();
    }
  });
});
