/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { eq } from 'drizzle-orm';
import type { FastifyInstance, InjectOptions } from 'fastify';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount, upsertBill, upsertService } from '../../src/adapters/db/billing-writers';
import {
  enforcementEvents,
  notifications,
  orders,
  resourcePlans,
  sdkLicenses,
  services,
  usageRecords,
} from '../../src/adapters/db/schema';
import { insertNotification } from '../../src/adapters/db/daemon-writers';
import { JOB_NAMES } from '../../src/adapters/queue/catalog';
import { buildHttpServer } from '../../src/http/server';
import { startHarness, waitFor, type Harness } from '../support/daemon';

const OPS = { user: 'ops', password: 'ops-password-123456' };
const VIEWER = { user: 'viewer', password: 'viewer-password-123456' };
const TOKEN = 'billing-token-0123456789abcdef0123456789';

const basic = (u: { user: string; password: string }) =>
  `Basic ${Buffer.from(`${u.user}:${u.password}`).toString('base64')}`;
const asOps = { authorization: basic(OPS) };
const asBilling = { authorization: `Bearer ${TOKEN}` };

const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

let h: Harness;
let app: FastifyInstance;

async function call(opts: InjectOptions) {
  const res = await app.inject(opts);
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
}

beforeAll(async () => {
  h = await startHarness({
    DASHBOARD_USER: OPS.user,
    DASHBOARD_PASSWORD: OPS.password,
    DASHBOARD_VIEWER_USER: VIEWER.user,
    DASHBOARD_VIEWER_PASSWORD: VIEWER.password,
    API_TOKENS: `billing=${TOKEN}`,
    HOLIDAYS: '2026-01-01',
    // Wrong credentials are tried on every route from one address: no throttle here
    // (http-hardening.test.ts covers it).
    AUTH_FAILURE_LIMIT: '10000',
    // The same-origin test uses the public name ops.example.
    ALLOWED_HOSTS: 'localhost,ops.example',
  });
  app = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
  await app.ready();
  const db = h.t.db;
  const now = Date.now();
  // acct-paid: nothing owed. acct-late: an overdue bill of another product (R6/R8).
  await upsertAccount(db, { id: 'acct-paid', currency: 'USD', timeZone: 'Asia/Shanghai' });
  await upsertAccount(db, { id: 'acct-late', currency: 'EUR', timeZone: 'Europe/Berlin' });
  await upsertBill(db, {
    id: 'b-live-1',
    accountId: 'acct-paid',
    product: 'live',
    amountMinor: 1_000,
    paidMinor: 1_000,
    status: 'paid',
    issuedAt: new Date('2026-01-05T00:00:00Z'),
    dueAt: new Date('2026-01-20T00:00:00Z'),
  });
  await upsertBill(db, {
    id: 'b-live-2',
    accountId: 'acct-paid',
    product: 'live',
    amountMinor: 2_500,
    paidMinor: 2_500,
    status: 'paid',
    issuedAt: new Date('2026-02-03T00:00:00Z'),
    dueAt: new Date('2026-02-20T00:00:00Z'),
  });
  await upsertBill(db, {
    id: 'b-oss-1',
    accountId: 'acct-paid',
    product: 'oss',
    amountMinor: 700,
    paidMinor: 200,
    issuedAt: new Date('2026-02-10T00:00:00Z'),
    dueAt: new Date(now + 30 * 24 * HOUR),
  });
  await upsertBill(db, {
    id: 'b-late',
    accountId: 'acct-late',
    product: 'oss',
    amountMinor: 9_000,
    paidMinor: 1_000,
    issuedAt: new Date(now - 10 * 24 * HOUR),
    dueAt: new Date(now - 2 * 24 * HOUR),
  });
  await upsertService(db, { id: 'svc-stream', accountId: 'acct-paid', kind: 'streaming' });
  await db.insert(sdkLicenses).values([
    { id: 'lic-new', accountId: 'acct-paid', kind: 'license' },
    { id: 'lic-used', accountId: 'acct-paid', kind: 'license', activatedAt: new Date(now - HOUR) },
  ]);
  await db.insert(orders).values([
    { id: 'o-payg', accountId: 'acct-paid', productType: 'payg', cashPaidMinor: 500 },
    {
      id: 'o-plan',
      accountId: 'acct-paid',
      productType: 'resource-plan',
      cashPaidMinor: 10_000,
      voucherPaidMinor: 2_000,
      gifts: [{ id: 'gift-1', kind: 'coupon' }],
    },
    {
      id: 'o-lic',
      accountId: 'acct-paid',
      productType: 'sdk-license',
      cashPaidMinor: 3_000,
      sdkLicenseId: 'lic-used',
    },
  ]);
  await db.insert(resourcePlans).values({
    id: 'plan-1',
    accountId: 'acct-paid',
    kind: 'transcoding-minutes',
    totalUnits: 1_000,
    usedUnits: 250,
    startsAt: new Date(now - 24 * HOUR),
    expiresAt: new Date(now + 300 * 24 * HOUR),
    purchasedAt: new Date(now - 24 * HOUR),
    orderId: 'o-plan',
    sdkLicenseId: 'lic-new',
  });
  await db.update(orders).set({ resourcePlanId: 'plan-1' }).where(eq(orders.id, 'o-plan'));
  await db.insert(usageRecords).values([
    {
      accountId: 'acct-paid',
      product: 'live',
      metric: 'minutes',
      quantity: 30,
      recordedAt: new Date('2026-02-01T01:00:00Z'),
      sourceId: 'u-1',
    },
    {
      accountId: 'acct-paid',
      product: 'live',
      metric: 'minutes',
      quantity: 12,
      recordedAt: new Date('2026-02-01T02:00:00Z'),
      sourceId: 'u-2',
    },
  ]);
});

afterAll(async () => {
  await app?.close();
  await h?.stop();
});

// Every route with a valid request, used for the 401 sweep and the fuzzing.
const ROUTES: { method: 'GET' | 'POST' | 'DELETE'; url: string; body?: unknown }[] = [
  { method: 'POST', url: '/v1/accounts/acct-paid/evaluate', body: {} },
  { method: 'GET', url: '/v1/accounts/acct-paid/purchase-eligibility' },
  { method: 'GET', url: '/v1/orders/o-plan/refund-quote' },
  { method: 'GET', url: '/v1/accounts/acct-paid/bills' },
  { method: 'GET', url: '/v1/accounts/acct-paid/usage' },
  { method: 'GET', url: '/v1/accounts/acct-paid/orders' },
  { method: 'GET', url: '/v1/accounts/acct-paid/timeline' },
  { method: 'GET', url: '/v1/openapi.json' },
  { method: 'POST', url: '/v1/services/svc-stream/hold', body: { confirmAccountId: 'acct-paid' } },
  {
    method: 'DELETE',
    url: '/v1/services/svc-stream/hold',
    body: { confirmAccountId: 'acct-paid' },
  },
  {
    method: 'POST',
    url: '/v1/studio-instances/none/release',
    body: { confirmAccountId: 'acct-paid' },
  },
  { method: 'POST', url: '/v1/ingest/bills', body: { bills: [] } },
  { method: 'POST', url: '/v1/ingest/payments', body: { payments: [] } },
  { method: 'POST', url: '/v1/ingest/topups', body: { topups: [] } },
  { method: 'POST', url: '/v1/ingest/plans', body: {} },
  { method: 'POST', url: '/v1/ingest/usage', body: { records: [] } },
  ...JOB_NAMES.map((name) => ({ method: 'POST' as const, url: `/v1/jobs/${name}`, body: {} })),
  { method: 'GET', url: '/metrics' },
];
const MUTATING = ROUTES.filter((r) => r.method !== 'GET');

describe('authentication', () => {
  const wrong = [
    { name: 'no credentials', headers: {} },
    { name: 'wrong password', headers: { authorization: basic({ ...OPS, password: 'nope' }) } },
    { name: 'unknown user', headers: { authorization: basic({ user: 'x', password: 'y' }) } },
    { name: 'wrong token', headers: { authorization: `Bearer ${TOKEN}x` } },
    { name: 'garbage scheme', headers: { authorization: 'Digest abc' } },
  ];
  for (const w of wrong) {
    it(`every route refuses ${w.name} with 401`, async () => {
      for (const r of ROUTES) {
        const res = await call({
          method: r.method,
          url: r.url,
          headers: w.headers,
          ...(r.body !== undefined ? { payload: r.body as object } : {}),
        });
        expect(res.status, `${r.method} ${r.url}`).toBe(401);
      }
    });
  }

  it('the dashboard refuses a bearer token and wrong credentials', async () => {
    for (const headers of [{}, asBilling, { authorization: basic({ ...OPS, password: 'x' }) }]) {
      const res = await app.inject({ method: 'GET', url: '/admin/queues', headers });
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(/^Basic/);
    }
    const ok = await app.inject({ method: 'GET', url: '/admin/queues', headers: asOps });
    expect(ok.statusCode).toBe(200);
  });

  it('healthz needs no credentials', async () => {
    expect((await call({ method: 'GET', url: '/healthz' })).status).toBe(200);
  });

  it('the viewer reads but cannot change anything, in the API or the dashboard', async () => {
    const viewer = { authorization: basic(VIEWER) };
    expect(
      (await call({ method: 'GET', url: '/v1/accounts/acct-paid/timeline', headers: viewer }))
        .status,
    ).toBe(200);
    for (const r of MUTATING) {
      const res = await call({
        method: r.method,
        url: r.url,
        headers: viewer,
        payload: r.body as object,
      });
      expect(res.status, `${r.method} ${r.url}`).toBe(403);
    }
    const add = await call({
      method: 'POST',
      url: '/admin/queues/api/queues/scan/add',
      headers: viewer,
      payload: { name: 'balance-scan', data: {} },
    });
    expect(add.status).toBe(403);
    const list = await call({ method: 'GET', url: '/admin/queues/api/queues', headers: viewer });
    expect(list.status).toBe(200);
    expect(list.body.queues.length).toBeGreaterThan(0);
    for (const q of list.body.queues) expect(q.readOnlyMode).toBe(true);
    const opsList = await call({ method: 'GET', url: '/admin/queues/api/queues', headers: asOps });
    for (const q of opsList.body.queues) expect(q.readOnlyMode).toBe(false);
  });

  it('refuses a cross-origin mutating request even with valid credentials', async () => {
    const res = await call({
      method: 'POST',
      url: '/v1/jobs/balance-scan',
      headers: { ...asOps, host: 'ops.example', origin: 'https://evil.example' },
      payload: {},
    });
    expect(res.status).toBe(403);
    const same = await call({
      method: 'POST',
      url: '/v1/jobs/balance-scan',
      headers: { ...asOps, host: 'ops.example', origin: 'https://ops.example' },
      payload: {},
    });
    expect(same.status).toBe(202);
    const referer = await call({
      method: 'POST',
      url: '/admin/queues/api/queues/scan/add',
      headers: { ...asOps, host: 'ops.example', referer: 'https://evil.example/page' },
      payload: { name: 'balance-scan', data: {} },
    });
    expect(referer.status).toBe(403);
  });
});

describe('bad input', () => {
  const cases: {
    name: string;
    url: string;
    method?: 'POST' | 'DELETE';
    body: unknown;
    field: string;
  }[] = [
    {
      name: 'unknown field',
      url: '/v1/accounts/acct-paid/evaluate',
      body: { x: 1 },
      field: 'body.x',
    },
    {
      name: 'bad account id',
      url: '/v1/jobs/evaluate-account',
      body: { accountId: 'a:b' },
      field: 'body.accountId',
    },
    {
      name: 'relay-only field',
      url: '/v1/jobs/evaluate-account',
      body: { accountId: 'acct-paid', outboxKey: 'k' },
      field: 'body.outboxKey',
    },
    {
      name: 'scan with unknown field',
      url: '/v1/jobs/balance-scan',
      body: { accountId: 'x' },
      field: 'body.accountId',
    },
    {
      name: 'control-plane without key',
      url: '/v1/jobs/control-plane',
      body: {},
      field: 'body.outboxKey',
    },
    {
      name: 'hold without confirmation',
      url: '/v1/services/svc-stream/hold',
      body: {},
      field: 'body.confirmAccountId',
    },
    {
      name: 'hold with the wrong account',
      url: '/v1/services/svc-stream/hold',
      body: { confirmAccountId: 'acct-late' },
      field: 'body.confirmAccountId',
    },
    {
      name: 'unhold with the wrong account',
      url: '/v1/services/svc-stream/hold',
      method: 'DELETE',
      body: { confirmAccountId: 'acct-late' },
      field: 'body.confirmAccountId',
    },
    {
      name: 'release without confirmation',
      url: '/v1/studio-instances/i-1/release',
      body: { reason: 'x' },
      field: 'body.confirmAccountId',
    },
    { name: 'empty bill batch', url: '/v1/ingest/bills', body: { bills: [] }, field: 'body.bills' },
    {
      name: 'float money',
      url: '/v1/ingest/bills',
      body: {
        bills: [
          {
            id: 'b',
            accountId: 'acct-paid',
            product: 'live',
            amountMinor: 1.5,
            issuedAt: '2026-01-01T00:00:00Z',
            dueAt: '2026-01-02T00:00:00Z',
          },
        ],
      },
      field: 'body.bills.0.amountMinor',
    },
    {
      name: 'due before issue',
      url: '/v1/ingest/bills',
      body: {
        bills: [
          {
            id: 'b',
            accountId: 'acct-paid',
            product: 'live',
            version: 1,
            amountMinor: 1,
            issuedAt: '2026-01-02T00:00:00Z',
            dueAt: '2026-01-01T00:00:00Z',
          },
        ],
      },
      field: 'body.bills.0.dueAt',
    },
    {
      name: 'a bill carrying a paid amount (paid amounts come only from payments)',
      url: '/v1/ingest/bills',
      body: {
        bills: [
          {
            id: 'b',
            accountId: 'acct-paid',
            product: 'live',
            version: 1,
            amountMinor: 1,
            paidMinor: 1,
            issuedAt: '2026-01-01T00:00:00Z',
            dueAt: '2026-01-02T00:00:00Z',
          },
        ],
      },
      field: 'body.bills.0.paidMinor',
    },
    {
      name: 'a bill without its version',
      url: '/v1/ingest/bills',
      body: {
        bills: [
          {
            id: 'b',
            accountId: 'acct-paid',
            product: 'live',
            amountMinor: 1,
            issuedAt: '2026-01-01T00:00:00Z',
            dueAt: '2026-01-02T00:00:00Z',
          },
        ],
      },
      field: 'body.bills.0.version',
    },
    {
      name: 'negative payment',
      url: '/v1/ingest/payments',
      body: { payments: [{ id: 'p', accountId: 'acct-paid', amountMinor: -5 }] },
      field: 'body.payments.0.amountMinor',
    },
    {
      name: 'top-up of zero',
      url: '/v1/ingest/topups',
      body: { topups: [{ id: 't', accountId: 'acct-paid', amountMinor: 0 }] },
      field: 'body.topups.0.amountMinor',
    },
    {
      name: 'plan without kind',
      url: '/v1/ingest/plans',
      body: {
        id: 'p',
        accountId: 'acct-paid',
        totalUnits: 1,
        startsAt: '2026-01-01T00:00:00Z',
        expiresAt: '2026-02-01T00:00:00Z',
      },
      field: 'body.kind',
    },
    {
      name: 'usage without offset',
      url: '/v1/ingest/usage',
      body: {
        records: [
          {
            accountId: 'acct-paid',
            sourceId: 's',
            product: 'live',
            metric: 'm',
            quantity: 1,
            recordedAt: '2026-01-01T00:00:00',
          },
        ],
      },
      field: 'body.records.0.recordedAt',
    },
  ];
  for (const c of cases) {
    it(`${c.name} → 400 naming ${c.field}`, async () => {
      const res = await call({
        method: c.method ?? 'POST',
        url: c.url,
        headers: asOps,
        payload: c.body as object,
      });
      expect(res.status).toBe(400);
      expect(res.body.issues.map((i: { path: string }) => i.path)).toContain(c.field);
    });
  }

  it('a bad query answers 400 with the field', async () => {
    const res = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/bills?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z&limit=0',
      headers: asOps,
    });
    expect(res.status).toBe(400);
    const paths = res.body.issues.map((i: { path: string }) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['query.limit']));
  });

  it('malformed JSON answers 400', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/ingest/bills',
      headers: { ...asOps, 'content-type': 'application/json' },
      payload: '{"bills": [',
    });
    expect(res.statusCode).toBe(400);
  });

  it('the dashboard add-job form is validated by the catalog schema', async () => {
    const bad = await call({
      method: 'POST',
      url: '/admin/queues/api/queues/evaluate/add',
      headers: asOps,
      payload: { name: 'evaluate-account', data: { accountId: 'no spaces allowed' } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i: { path: string }) => i.path)).toContain('data.accountId');
    const wrongQueue = await call({
      method: 'POST',
      url: '/admin/queues/api/queues/evaluate/add',
      headers: asOps,
      payload: { name: 'balance-scan', data: {} },
    });
    expect(wrongQueue.status).toBe(400);
    const ok = await call({
      method: 'POST',
      url: '/admin/queues/api/queues/scan/add',
      headers: asOps,
      payload: { name: 'plan-scan', data: { origin: 'spoofed' } },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.job.data.origin).toBe('operator:ops');
  });
});

describe('fuzzing', () => {
  const json = fc.jsonValue({ maxDepth: 3 });
  const item = fc.record(
    {
      id: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('x1', 'acct-paid', 'b-late')),
      accountId: fc.oneof(fc.constantFrom('acct-paid', 'acct-late', 'nobody'), fc.string()),
      amountMinor: fc.oneof(fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER)),
      product: fc.oneof(fc.constantFrom('live', 'oss'), fc.string()),
      issuedAt: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        fc.string(),
      ),
      dueAt: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        fc.string(),
      ),
      extra: json,
    },
    { requiredKeys: [] },
  );
  const bodies = fc.oneof(
    json,
    fc.record({ bills: fc.array(item, { maxLength: 3 }) }, { requiredKeys: [] }),
    fc.record({ payments: fc.array(item, { maxLength: 3 }) }, { requiredKeys: [] }),
    fc.record({ topups: fc.array(item, { maxLength: 3 }) }, { requiredKeys: [] }),
    fc.record({ records: fc.array(item, { maxLength: 3 }) }, { requiredKeys: [] }),
    fc.record(
      {
        confirmAccountId: fc.oneof(fc.constant('acct-paid'), fc.string()),
        accountId: fc.oneof(fc.constant('acct-paid'), fc.string()),
        outboxKey: fc.string(),
        origin: fc.string(),
        reason: fc.string(),
      },
      { requiredKeys: [] },
    ),
  );

  it('no body of any mutating route yields a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...MUTATING), bodies, async (route, body) => {
        const res = await app.inject({
          method: route.method,
          url: route.url,
          headers: { ...asOps, 'content-type': 'application/json' },
          payload: JSON.stringify(body),
        });
        expect(res.statusCode, `${route.url} ${JSON.stringify(body)}`).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
  });
});

describe('inquiries', () => {
  it('purchase eligibility: allowed without overdue, refused with the amount otherwise (R8)', async () => {
    const ok = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/purchase-eligibility',
      headers: asOps,
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ allowed: true, overdueMinor: 0 });
    const late = await call({
      method: 'GET',
      url: '/v1/accounts/acct-late/purchase-eligibility',
      headers: asBilling,
    });
    expect(late.body).toMatchObject({
      allowed: false,
      reason: 'overdue-bills',
      amountToPayMinor: 8_000,
      currency: 'EUR',
      overdueBillIds: ['b-late'],
    });
    const none = await call({
      method: 'GET',
      url: '/v1/accounts/ghost/purchase-eligibility',
      headers: asOps,
    });
    expect(none.status).toBe(404);
  });

  it('refund quotes (R11)', async () => {
    const plan = await call({
      method: 'GET',
      url: '/v1/orders/o-plan/refund-quote',
      headers: asOps,
    });
    expect(plan.status).toBe(200);
    // 750 of 1000 units unused: 75 % of the cash; vouchers kept; the gift voided.
    expect(plan.body).toMatchObject({
      refundable: true,
      refundMinor: 7_500,
      currency: 'USD',
      keptMinor: { voucher: 2_000, coupon: 0, cash: 2_500 },
      voidedGiftIds: ['gift-1'],
    });
    expect(plan.body.arrival.earliest).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const payg = await call({
      method: 'GET',
      url: '/v1/orders/o-payg/refund-quote',
      headers: asOps,
    });
    expect(payg.body).toMatchObject({ refundable: false, reason: 'payg-not-refundable' });
    const lic = await call({ method: 'GET', url: '/v1/orders/o-lic/refund-quote', headers: asOps });
    expect(lic.body).toMatchObject({ refundable: false, reason: 'license-activated' });
    const missing = await call({
      method: 'GET',
      url: '/v1/orders/nope/refund-quote',
      headers: asOps,
    });
    expect(missing.status).toBe(404);
  });

  it('refund window counts from the refund request (requestedAt), and a bad requestedAt is a 422', async () => {
    // An order placed on 2026-11-20; its refund requested on Friday 2026-11-27, 10:00 in
    // Shanghai (the account's zone). Whenever the quote is asked, the window is Tue–Wed.
    await upsertAccount(h.t.db, { id: 'acct-refund', currency: 'USD', timeZone: 'Asia/Shanghai' });
    await h.t.db.insert(orders).values({
      id: 'o-friday',
      accountId: 'acct-refund',
      productType: 'sdk-license',
      cashPaidMinor: 3_000,
      createdAt: new Date('2026-11-20T00:00:00Z'),
    });
    const quote = (query: string) =>
      call({ method: 'GET', url: `/v1/orders/o-friday/refund-quote${query}`, headers: asOps });
    const friday = await quote('?requestedAt=2026-11-27T10:00:00%2B08:00');
    expect(friday.status).toBe(200);
    expect(friday.body).toMatchObject({
      refundable: true,
      refundMinor: 3_000,
      requestedAt: '2026-11-27T02:00:00.000Z',
      arrival: { earliest: '2026-12-01', latest: '2026-12-02' },
    });
    // Default: requested now.
    const before = Date.now();
    const now = await quote('');
    expect(now.status).toBe(200);
    expect(new Date(String(now.body.requestedAt)).getTime()).toBeGreaterThanOrEqual(before - 1_000);

    for (const [value, says] of [
      ['not-a-date', 'ISO 8601'],
      ['2026-11-27T10:00:00', 'ISO 8601'], // no offset: which local day?
      ['2026-02-30T10:00:00Z', 'ISO 8601'],
      ['2026-11-19T23:59:59Z', 'before the order was placed'],
    ] as const) {
      const bad = await quote(`?requestedAt=${encodeURIComponent(value)}`);
      expect(bad.status, value).toBe(422);
      expect(bad.body).toMatchObject({
        error: 'invalid-requested-at',
        issues: [{ path: 'query.requestedAt' }],
      });
      expect(bad.body.message).toContain(says);
    }
    const unknown = await quote('?requestedOn=2026-11-27');
    expect(unknown.status).toBe(400);
  });

  it('billing details grouped by local month and product (R12)', async () => {
    const res = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/bills?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z',
      headers: asOps,
    });
    expect(res.status).toBe(200);
    expect(res.body.bills.map((b: { id: string }) => b.id)).toEqual([
      'b-oss-1',
      'b-live-2',
      'b-live-1',
    ]);
    expect(res.body.totals).toEqual([
      {
        period: '2026-01-01',
        product: 'live',
        bills: 1,
        amountMinor: 1_000,
        paidMinor: 1_000,
        unpaidMinor: 0,
      },
      {
        period: '2026-02-01',
        product: 'live',
        bills: 1,
        amountMinor: 2_500,
        paidMinor: 2_500,
        unpaidMinor: 0,
      },
      {
        period: '2026-02-01',
        product: 'oss',
        bills: 1,
        amountMinor: 700,
        paidMinor: 200,
        unpaidMinor: 500,
      },
    ]);
    const oss = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/bills?product=oss&granularity=day',
      headers: asOps,
    });
    expect(oss.body.totals).toEqual([
      {
        period: '2026-02-10',
        product: 'oss',
        bills: 1,
        amountMinor: 700,
        paidMinor: 200,
        unpaidMinor: 500,
      },
    ]);
  });

  it('raw usage is marked reference-only; orders are listed (R12)', async () => {
    const usage = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/usage',
      headers: asOps,
    });
    expect(usage.body.referenceOnly).toBe(true);
    expect(usage.body.totals).toEqual([
      { product: 'live', metric: 'minutes', records: 2, quantity: 42 },
    ]);
    const list = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/orders',
      headers: asOps,
    });
    expect(list.body.orders.map((o: { id: string }) => o.id).sort()).toEqual([
      'o-lic',
      'o-payg',
      'o-plan',
    ]);
  });

  it('the OpenAPI document lists every route', async () => {
    const doc = await call({ method: 'GET', url: '/v1/openapi.json', headers: asOps });
    expect(doc.body.openapi).toMatch(/^3\./);
    for (const path of [
      '/v1/accounts/{id}/evaluate',
      '/v1/accounts/{id}/purchase-eligibility',
      '/v1/orders/{id}/refund-quote',
      '/v1/ingest/plans',
      '/v1/services/{id}/hold',
      '/v1/jobs/balance-scan',
    ]) {
      expect(doc.body.paths).toHaveProperty([path]);
    }
    expect(
      doc.body.paths['/v1/ingest/bills'].post.requestBody.content['application/json'].schema
        .properties.bills.type,
    ).toBe('array');
  });
});

describe('operator actions and ingest', () => {
  it('manual triggers go through the queue and the event log names the operator', async () => {
    const res = await call({
      method: 'POST',
      url: '/v1/jobs/evaluate-account',
      headers: asOps,
      payload: { accountId: 'acct-late' },
    });
    expect(res.status).toBe(202);
    const events = await waitFor(async () => {
      const rows = await h.t.db
        .select()
        .from(enforcementEvents)
        .where(eq(enforcementEvents.accountId, 'acct-late'));
      return rows.some((e) => e.kind === 'operator-job' && e.actor === 'operator:ops')
        ? rows
        : null;
    });
    expect(events.length).toBeGreaterThan(0);
    const missing = await call({
      method: 'POST',
      url: '/v1/jobs/send-notification',
      headers: asOps,
      payload: { outboxKey: 'nope' },
    });
    expect(missing.status).toBe(404);

    // Resend one message: to its channel's queue; a message already sent never goes twice.
    for (const [key, status] of [
      ['msg-pending', 'pending'],
      ['msg-sent', 'sent'],
    ] as const) {
      await insertNotification(h.t.db, {
        dedupeKey: key,
        accountId: 'acct-late',
        channel: 'sms',
        template: 'overdue-reminder',
        locale: 'en',
        recipient: '+14155550100',
        params: {},
      });
      await h.t.db.update(notifications).set({ status }).where(eq(notifications.dedupeKey, key));
    }
    const resend = await call({
      method: 'POST',
      url: '/v1/jobs/send-notification',
      headers: asOps,
      payload: { outboxKey: 'msg-pending' },
    });
    expect(resend.status).toBe(202);
    expect(resend.body.queue).toBe('notify-sms');
    const sent = await call({
      method: 'POST',
      url: '/v1/jobs/send-notification',
      headers: asOps,
      payload: { outboxKey: 'msg-sent' },
    });
    expect(sent.status).toBe(409);
  });

  it('operator hold suspends, survives evaluation, and its release resumes', async () => {
    // The fuzzing above may have held (or released) this service with a valid body: start clean.
    await h.t.raw`update services set operator_hold = false, status = 'active'
                   where id = 'svc-stream'`;
    const on = await call({
      method: 'POST',
      url: '/v1/services/svc-stream/hold',
      headers: asOps,
      payload: { confirmAccountId: 'acct-paid', reason: 'abuse report' },
    });
    expect(on.status).toBe(202);
    expect(on.body).toMatchObject({ changed: true, status: 'suspended' });
    expect(on.body.effectKey).toMatch(/^operator-suspend-v1-svc-stream-/);
    const [held] = await h.t.db.select().from(services).where(eq(services.id, 'svc-stream'));
    expect(held).toMatchObject({ operatorHold: true, status: 'suspended' });
    const again = await call({
      method: 'POST',
      url: '/v1/services/svc-stream/hold',
      headers: asOps,
      payload: { confirmAccountId: 'acct-paid' },
    });
    expect(again.body.changed).toBe(false);
    const off = await call({
      method: 'DELETE',
      url: '/v1/services/svc-stream/hold',
      headers: asOps,
      payload: { confirmAccountId: 'acct-paid' },
    });
    expect(off.body).toMatchObject({ changed: true, status: 'active' });
    expect(off.body.effectKey).toMatch(/^operator-resume-v1-svc-stream-/);
    // Both effects are applied by the effect path, in order; the timeline shows when.
    await waitFor(
      async () =>
        (
          await h.t.raw<{ n: string }[]>`
            select count(*) as n from enforcement_events
             where kind = 'effect-applied' and detail ->> 'key' in (${String(on.body.effectKey)}, ${String(off.body.effectKey)})`
        )[0]?.n === '2',
      10_000,
      'both operator effects applied',
    );
    const timeline = await call({
      method: 'GET',
      url: '/v1/accounts/acct-paid/timeline',
      headers: asOps,
    });
    const kinds = timeline.body.events.map((e: { kind: string }) => e.kind);
    expect(kinds).toEqual(
      expect.arrayContaining(['operator-hold', 'operator-hold-released', 'effect-applied']),
    );
    // The fake control plane saw the suspension and the resumption.
    const keys = [String(on.body.effectKey), String(off.body.effectKey)];
    const ops = h.cp.calls
      .filter((c: { idempotencyKey: string }) => keys.includes(c.idempotencyKey))
      .map((c: { op: string }) => c.op);
    expect(ops).toEqual(['suspend', 'resume']);
  });

  it('releasing a studio with no pending release is refused', async () => {
    const res = await call({
      method: 'POST',
      url: '/v1/studio-instances/ghost/release',
      headers: asOps,
      payload: { confirmAccountId: 'acct-paid' },
    });
    expect(res.status).toBe(404);
  });

  it('ingest: bills, payments and top-ups are idempotent by the caller’s id', async () => {
    await upsertAccount(h.t.db, { id: 'acct-new', currency: 'USD' });
    const bill = {
      id: 'nb-1',
      accountId: 'acct-new',
      product: 'live',
      version: 1,
      amountMinor: 5_000,
      issuedAt: iso(Date.now() - 5 * 24 * HOUR),
      dueAt: iso(Date.now() - 24 * HOUR),
    };
    for (const [status, result] of [
      [202, 'created'],
      [200, 'duplicate'],
    ] as const) {
      const res = await call({
        method: 'POST',
        url: '/v1/ingest/bills',
        headers: asBilling,
        payload: { bills: [bill] },
      });
      expect(res.status).toBe(status);
      expect(res.body.bills[0]).toEqual({ id: 'nb-1', result });
    }
    const plan = {
      id: 'np-1',
      accountId: 'acct-new',
      version: 1,
      kind: 'minutes',
      totalUnits: 100,
      startsAt: iso(Date.now()),
      expiresAt: iso(Date.now() + 30 * 24 * HOUR),
      order: { id: 'no-1', cashPaidMinor: 1_000 },
    };
    const refused = await call({
      method: 'POST',
      url: '/v1/ingest/plans',
      headers: asBilling,
      payload: plan,
    });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      error: 'purchase-refused',
      reason: 'overdue-bills',
      amountToPayMinor: 5_000,
    });

    const payment = {
      payments: [{ id: 'pay-1', accountId: 'acct-new', version: 1, amountMinor: 6_000 }],
    };
    const first = await call({
      method: 'POST',
      url: '/v1/ingest/payments',
      headers: asBilling,
      payload: payment,
    });
    expect(first.status).toBe(202);
    expect(first.body.payments[0]).toEqual({
      id: 'pay-1',
      result: 'created',
      allocations: [{ billId: 'nb-1', amountMinor: 5_000 }],
      balanceCreditMinor: 1_000,
    });
    const replay = await call({
      method: 'POST',
      url: '/v1/ingest/payments',
      headers: asBilling,
      payload: payment,
    });
    expect(replay.status).toBe(200);
    expect(replay.body.payments[0]).toEqual({ id: 'pay-1', result: 'duplicate' });

    const topup = {
      topups: [{ id: 'top-1', accountId: 'acct-new', version: 1, amountMinor: 500 }],
    };
    await call({ method: 'POST', url: '/v1/ingest/topups', headers: asBilling, payload: topup });
    await call({ method: 'POST', url: '/v1/ingest/topups', headers: asBilling, payload: topup });
    const [acct] = await h.t
      .raw`select available_balance_minor::int as b from accounts where id = 'acct-new'`;
    expect(acct?.b).toBe(1_500);

    const bought = await call({
      method: 'POST',
      url: '/v1/ingest/plans',
      headers: asBilling,
      payload: plan,
    });
    expect(bought.status).toBe(201);
    const boughtAgain = await call({
      method: 'POST',
      url: '/v1/ingest/plans',
      headers: asBilling,
      payload: plan,
    });
    expect(boughtAgain.status).toBe(200);
    expect(boughtAgain.body.created).toBe(false);

    const usage = {
      records: [
        {
          accountId: 'acct-new',
          sourceId: 'us-1',
          version: 1,
          product: 'live',
          metric: 'minutes',
          quantity: 3,
          recordedAt: iso(Date.now()),
        },
      ],
    };
    const u1 = await call({
      method: 'POST',
      url: '/v1/ingest/usage',
      headers: asBilling,
      payload: usage,
    });
    const u2 = await call({
      method: 'POST',
      url: '/v1/ingest/usage',
      headers: asBilling,
      payload: usage,
    });
    expect([u1.status, u1.body.stored, u2.status, u2.body.duplicates]).toEqual([202, 1, 200, 1]);

    const unknown = await call({
      method: 'POST',
      url: '/v1/ingest/bills',
      headers: asBilling,
      payload: { bills: [{ ...bill, id: 'nb-2', accountId: 'ghost' }] },
    });
    expect(unknown.status).toBe(422);
    expect(unknown.body.issues[0].path).toBe('body.bills.0.accountId');
  });
});
