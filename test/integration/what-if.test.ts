/* eslint-disable @typescript-eslint/no-unsafe-member-access --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/adapters/clock/clock';
import { upsertAccount, upsertBill, upsertService } from '../../src/adapters/db/billing-writers';
import type { Db } from '../../src/adapters/db/client';
import { evaluateBatch } from '../../src/adapters/db/evaluation';
import { whatIf } from '../../src/adapters/db/what-if';
import { proposedRules } from '../../src/config-overrides';
import { asOps, startApiHarness, type ApiHarness } from '../support/api-harness';
import type { Harness } from '../support/daemon';
import { createTestDatabase, type TestDatabase } from '../support/db';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const AT = new Date(Date.now() + HOUR);
const ACCOUNTS = 40;
const PROPOSAL = ['PROTECTION_AMOUNT_MINOR=20000', 'PROTECTION_DURATION=3d'];

let api: ApiHarness;
let h: Harness;
const call: ApiHarness['call'] = (opts) => api.call(opts);

/**
 * A fleet in every state the proposal touches: overdue amounts from 1,000 to 40,000 and overdue
 * for 1 to 5 days, some low on balance only, all on the default protection quota.
 */
async function seedFleet(db: Db): Promise<void> {
  const now = Date.now();
  for (let i = 1; i <= ACCOUNTS; i += 1) {
    const id = `wi${String(i).padStart(3, '0')}`;
    const lowOnly = i % 8 === 0;
    await upsertAccount(db, {
      id,
      currency: 'CNY',
      availableBalanceMinor: lowOnly ? 100 : -i * 1_000,
      timeZone: 'Asia/Shanghai',
      locale: 'en',
      email: `${id}@example.com`,
      phone: '+8613800000000',
    });
    await upsertService(db, { id: `${id}-live`, accountId: id, kind: 'streaming' });
    if (lowOnly) continue;
    await upsertBill(db, {
      id: `${id}-bill`,
      accountId: id,
      product: 'live',
      amountMinor: i * 1_000,
      paidMinor: 0,
      issuedAt: new Date(now - 20 * DAY),
      dueAt: new Date(now - ((i % 5) + 1) * DAY),
    });
  }
}

type KindDelta = Map<string, { more: number; fewer: number }>;

/** Evaluates every account of a copy for real with each rule set, and compares the decisions. */
async function realDeltas(current: TestDatabase, proposed: TestDatabase): Promise<KindDelta> {
  const rules = {
    current: h.config.rules,
    proposed: (() => {
      const p = proposedRules(h.config, PROPOSAL);
      if (!p.ok) throw new Error('proposal refused');
      return p.rules;
    })(),
  };
  const requests = Array.from({ length: ACCOUNTS }, (_, i) => ({
    accountId: `wi${String(i + 1).padStart(3, '0')}`,
    actor: 'daemon',
  }));
  const clock = manualClock(AT);
  const a = await evaluateBatch(current.db, requests, clock, rules.current, 'wait');
  const b = await evaluateBatch(proposed.db, requests, clock, rules.proposed, 'wait');
  const kinds = (o: unknown): string[] =>
    (o as { decisions?: { kind: string }[] }).decisions?.map((d) => d.kind) ?? [];
  const delta: KindDelta = new Map();
  for (const { accountId } of requests) {
    const count = (list: string[]) => {
      const m = new Map<string, number>();
      for (const k of list) m.set(k, (m.get(k) ?? 0) + 1);
      return m;
    };
    const now = count(kinds(a.get(accountId)));
    const then = count(kinds(b.get(accountId)));
    for (const kind of new Set([...now.keys(), ...then.keys()])) {
      const d = (then.get(kind) ?? 0) - (now.get(kind) ?? 0);
      if (d === 0) continue;
      const e = delta.get(kind) ?? { more: 0, fewer: 0 };
      if (d > 0) e.more += 1;
      else e.fewer += 1;
      delta.set(kind, e);
    }
  }
  return delta;
}

/**
 * Rows written to every table so far (pg_stat_user_tables) and the rows each holds. A backend
 * reports its counts when it goes idle, at the latest 10 s later (PostgreSQL 15's
 * PGSTAT_IDLE_INTERVAL): the caller waits that long before the second reading.
 */
async function writes(t: TestDatabase): Promise<Record<string, string>> {
  const rows = await t.raw<{ schemaname: string; relname: string; n: string }[]>`
    select schemaname, relname, (n_tup_ins + n_tup_upd + n_tup_del)::text as n
      from pg_stat_user_tables order by schemaname, relname`;
  const out: Record<string, string> = {};
  for (const r of rows) {
    const [c] = await t.raw.unsafe<{ n: string }[]>(
      `select count(*)::text as n from "${r.schemaname}"."${r.relname}"`,
    );
    out[`${r.schemaname}.${r.relname}`] = `${r.n} written, ${c?.n} rows`;
  }
  return out;
}
const STATS_SETTLE_MS = 11_000;

beforeAll(async () => {
  // Enforcement off: the daemon beside it evaluates nothing, so the fleet stays as seeded.
  api = await startApiHarness({ ENFORCEMENT_MODE: 'off' });
  h = api.h;
  await seedFleet(h.t.db);
}, 60_000);

afterAll(async () => {
  await api?.stop();
});

describe('fleet what-if', () => {
  it(
    'writes nothing, and its counts match evaluating the proposal for real on copies',
    { timeout: 90_000 },
    async () => {
      await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
      const before = await writes(h.t);
      const res = await call({
        method: 'POST',
        url: '/v1/what-if',
        headers: asOps,
        payload: {
          set: { PROTECTION_AMOUNT_MINOR: '20000', PROTECTION_DURATION: '3d' },
          at: AT.toISOString(),
          sample: 3,
        },
      });
      expect(res.status).toBe(200);
      await new Promise((r) => setTimeout(r, STATS_SETTLE_MS));
      expect(await writes(h.t)).toEqual(before);
      expect(res.body.accounts).toBe(ACCOUNTS);
      expect(res.body.proposed).toEqual({
        PROTECTION_AMOUNT_MINOR: '20000',
        PROTECTION_DURATION: '3d',
      });

      const current = await createTestDatabase();
      const proposed = await createTestDatabase();
      try {
        await seedFleet(current.db);
        await seedFleet(proposed.db);
        const real = await realDeltas(current, proposed);
        const reported = new Map(
          (res.body.kinds as { decision: string; more: number; fewer: number }[]).map((k) => [
            k.decision,
            { more: k.more, fewer: k.fewer },
          ]),
        );
        expect(reported).toEqual(real);
        expect(reported.size).toBeGreaterThan(0);
        // The proposal is more lenient: fewer suspensions, and the samples name such accounts.
        const suspend = reported.get('suspend-services');
        expect(suspend?.fewer).toBeGreaterThan(0);
        const sample = (
          res.body.kinds as { decision: string; sampleFewer: { accountId: string }[] }[]
        ).find((k) => k.decision === 'suspend-services')?.sampleFewer;
        expect(sample?.length).toBe(3);
      } finally {
        await current.drop();
        await proposed.drop();
      }
    },
  );

  it('refuses what is not a rule setting, or a bad value, with the setting named', async () => {
    const notRule = await call({
      method: 'POST',
      url: '/v1/what-if',
      headers: asOps,
      payload: { set: { DB_POOL_SIZE: '4' } },
    });
    expect(notRule.status).toBe(400);
    expect(JSON.stringify(notRule.body)).toContain('set');
    const bad = await call({
      method: 'POST',
      url: '/v1/what-if',
      headers: asOps,
      payload: { set: { PROTECTION_DURATION: 'three days' } },
    });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('PROTECTION_DURATION');
    const none = await call({
      method: 'POST',
      url: '/v1/what-if',
      headers: asOps,
      payload: { set: {} },
    });
    expect(none.status).toBe(400);
  });

  it('the same comparison from the library at another instant reads every account once', async () => {
    const p = proposedRules(h.config, PROPOSAL);
    if (!p.ok) throw new Error('proposal refused');
    const seen: number[] = [];
    const report = await whatIf(h.t.db, h.config.rules, p.rules, {
      at: new Date(AT.getTime() + 10 * DAY),
      pageSize: 7,
      sample: 0,
      onProgress: (done) => seen.push(done),
    });
    expect(report.accounts).toBe(ACCOUNTS);
    expect(seen).toEqual([7, 14, 21, 28, 35, 40]);
  });
});
