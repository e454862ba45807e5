import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadAccountSnapshot,
  mapAccountSnapshot,
  type AccountRows,
  type SnapshotResult,
} from '../../src/adapters/db/account-snapshot';
import {
  upsertAccount,
  upsertBill,
  upsertPlan,
  upsertService,
  upsertStudioInstance,
} from '../../src/adapters/db/billing-writers';
import type { AccountSnapshot } from '../../src/domain/snapshot';
import { createTestDatabase, type TestDatabase } from '../support/db';

const NOW = new Date('2025-06-10T08:00:00.000Z');
const DAY = 86_400_000;
const WINDOW = 7 * DAY;
const days = (n: number) => new Date(NOW.getTime() + n * DAY);

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

function load(accountId: string): Promise<SnapshotResult> {
  return t.db.transaction((tx) =>
    loadAccountSnapshot(tx, accountId, NOW, { revertNoticeWindowMs: WINDOW }),
  );
}

function expectInvalid(result: SnapshotResult): string {
  if (result.ok) throw new Error('expected { ok: false }, got a snapshot');
  expect(result.code).toBe('invalid');
  return result.reason;
}

async function seedFull(): Promise<void> {
  await upsertAccount(t.db, {
    id: 'full',
    currency: 'CNY',
    availableBalanceMinor: -1_250,
    timeZone: 'Asia/Shanghai',
    locale: 'zh-CN',
    email: 'ops@example.cn',
    phone: '+8613800000000',
    lowBalanceThresholdMinor: 5_000,
    protectionCustom: true,
    protectionAmountMinor: 20_000,
    protectionDurationSeconds: 3 * 86_400,
    planAlertThresholds: [
      { kind: 'percent', percent: 30 },
      { kind: 'units', units: 100 },
    ],
    enforcementState: 'protected',
    episodeSeq: 2,
    episodeStartedAt: days(-1),
    lastEpisodeEndedAt: days(-30),
  });
  const bill = { accountId: 'full', issuedAt: days(-40) };
  await upsertBill(t.db, {
    ...bill,
    id: 'b-live',
    product: 'live',
    amountMinor: 9_000,
    paidMinor: 1_000,
    dueAt: days(-1),
  });
  await upsertBill(t.db, {
    ...bill,
    id: 'b-oss',
    product: 'oss',
    amountMinor: 500,
    dueAt: days(-2),
  });
  await upsertBill(t.db, {
    ...bill,
    id: 'b-future',
    product: 'live',
    amountMinor: 700,
    dueAt: days(5),
  });
  // Not loaded: settled, fully paid while still marked unpaid, voided.
  await upsertBill(t.db, {
    ...bill,
    id: 'b-paid',
    product: 'live',
    amountMinor: 100,
    paidMinor: 100,
    status: 'paid',
    dueAt: days(-3),
  });
  await upsertBill(t.db, {
    ...bill,
    id: 'b-covered',
    product: 'live',
    amountMinor: 100,
    paidMinor: 150,
    dueAt: days(-3),
  });
  await upsertBill(t.db, {
    ...bill,
    id: 'b-void',
    product: 'live',
    amountMinor: 100,
    status: 'void',
    dueAt: days(-3),
  });

  await upsertService(t.db, { id: 'svc-stream', accountId: 'full', kind: 'streaming' });
  await upsertService(t.db, {
    id: 'svc-rec',
    accountId: 'full',
    kind: 'recording',
    status: 'suspended',
    operatorHold: true,
  });
  await upsertService(t.db, {
    id: 'svc-studio',
    accountId: 'full',
    kind: 'studio',
    planType: 'duration',
    status: 'suspended',
    overdueHold: true,
    overdueEpisodeSeq: 2,
  });
  await upsertStudioInstance(t.db, {
    id: 'studio-a',
    accountId: 'full',
    serviceId: 'svc-studio',
    name: 'Studio A',
    streaming: true,
    releaseDueAt: days(0.5),
    releaseEpisodeSeq: 2,
  });
  const plan = { accountId: 'full', kind: 'transcoding-minutes', purchasedAt: days(-60) };
  await upsertPlan(t.db, {
    ...plan,
    id: 'p-live',
    totalUnits: 1_000,
    usedUnits: 990,
    startsAt: days(-60),
    expiresAt: days(20),
    alertThresholds: [{ kind: 'percent', percent: 1 }],
  });
  await upsertPlan(t.db, {
    ...plan,
    id: 'p-recent',
    totalUnits: 10,
    usedUnits: 0,
    startsAt: days(-60),
    expiresAt: days(-6),
  });
  // Not loaded: expired before the revert-notice window.
  await upsertPlan(t.db, {
    ...plan,
    id: 'p-old',
    totalUnits: 10,
    startsAt: days(-60),
    expiresAt: days(-8),
  });
}

describe('loadAccountSnapshot', () => {
  it('maps every row of a complete account', async () => {
    await seedFull();
    const result = await load('full');
    const expected: AccountSnapshot = {
      accountId: 'full',
      currency: 'CNY',
      timeZone: 'Asia/Shanghai',
      locale: 'zh-CN',
      availableBalanceMinor: -1_250,
      lowBalanceThresholdMinor: 5_000,
      protection: { amountMinor: 20_000, durationMs: 3 * DAY },
      channels: ['email', 'sms'],
      enforcementState: 'protected',
      episode: { seq: 2, startedAt: days(-1) },
      lastEpisodeSeq: 2,
      lastEpisodeEndedAt: days(-30),
      planThresholds: [
        { kind: 'percent', percent: 30 },
        { kind: 'units', units: 100 },
      ],
      bills: [
        { id: 'b-oss', product: 'oss', amountMinor: 500, paidMinor: 0, dueAt: days(-2) },
        { id: 'b-live', product: 'live', amountMinor: 9_000, paidMinor: 1_000, dueAt: days(-1) },
        { id: 'b-future', product: 'live', amountMinor: 700, paidMinor: 0, dueAt: days(5) },
      ],
      services: [
        {
          id: 'svc-rec',
          kind: 'recording',
          planType: 'payg',
          status: 'suspended',
          overdueHold: false,
          operatorHold: true,
        },
        {
          id: 'svc-stream',
          kind: 'streaming',
          planType: 'payg',
          status: 'active',
          overdueHold: false,
          operatorHold: false,
        },
        {
          id: 'svc-studio',
          kind: 'studio',
          planType: 'duration',
          status: 'suspended',
          overdueHold: true,
          operatorHold: false,
        },
      ],
      studioInstances: [
        {
          id: 'studio-a',
          serviceId: 'svc-studio',
          name: 'Studio A',
          streaming: true,
          releaseDueAt: days(0.5),
          releasedAt: null,
        },
      ],
      plans: [
        {
          id: 'p-recent',
          kind: 'transcoding-minutes',
          totalUnits: 10,
          usedUnits: 0,
          startsAt: days(-60),
          expiresAt: days(-6),
          purchasedAt: days(-60),
          thresholds: null,
        },
        {
          id: 'p-live',
          kind: 'transcoding-minutes',
          totalUnits: 1_000,
          usedUnits: 990,
          startsAt: days(-60),
          expiresAt: days(20),
          purchasedAt: days(-60),
          thresholds: [{ kind: 'percent', percent: 1 }],
        },
      ],
    };
    expect(result).toEqual({
      ok: true,
      snapshot: expected,
      contacts: { email: 'ops@example.cn', phone: '+8613800000000' },
    });
  });

  it('maps defaults: no protection override, no episode, no channels without contacts', async () => {
    await upsertAccount(t.db, { id: 'bare', currency: 'USD' });
    const result = await load('bare');
    expect(result).toEqual({
      ok: true,
      snapshot: {
        accountId: 'bare',
        currency: 'USD',
        timeZone: 'UTC',
        locale: 'en',
        availableBalanceMinor: 0,
        lowBalanceThresholdMinor: null,
        protection: null,
        channels: [],
        enforcementState: 'active',
        episode: null,
        lastEpisodeSeq: 0,
        lastEpisodeEndedAt: null,
        planThresholds: null,
        bills: [],
        services: [],
        studioInstances: [],
        plans: [],
      },
      contacts: { email: null, phone: null },
    });
  });

  it.each([
    [
      'custom, both null: no protection at all',
      { protectionCustom: true },
      { amountMinor: null, durationMs: null },
    ],
    [
      'custom amount only',
      { protectionCustom: true, protectionAmountMinor: 0 },
      { amountMinor: 0, durationMs: null },
    ],
    [
      'custom duration only',
      { protectionCustom: true, protectionDurationSeconds: 90 },
      { amountMinor: null, durationMs: 90_000 },
    ],
    ['not custom: rule default', { protectionCustom: false }, null],
  ])('protection: %s', async (name, patch, protection) => {
    const id = `prot-${name.replace(/[^A-Za-z0-9]+/g, '-')}`;
    await upsertAccount(t.db, { id, currency: 'USD', ...patch });
    const result = await load(id);
    expect(result.ok && result.snapshot.protection).toEqual(protection);
  });

  it.each([
    ['all reachable', {}, ['email', 'sms']],
    ['email preference off', { notifyEmail: false }, ['sms']],
    ['email bounced', { emailBounced: true }, ['sms']],
    ['no email address', { email: null }, ['sms']],
    ['sms preference off', { notifySms: false }, ['email']],
    ['sms opted out', { smsOptedOut: true }, ['email']],
    ['no phone', { phone: null }, ['email']],
    ['nothing reachable', { phone: null, emailBounced: true }, []],
  ])('channels: %s', async (name, patch, channels) => {
    const id = `ch-${name.replaceAll(' ', '-')}`;
    await upsertAccount(t.db, {
      id,
      currency: 'USD',
      email: 'a@example.com',
      phone: '+14155550100',
      ...patch,
    });
    const result = await load(id);
    expect(result.ok && result.snapshot.channels).toEqual(channels);
  });

  it('locks the account row until the transaction ends', async () => {
    await upsertAccount(t.db, { id: 'locked', currency: 'USD' });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let loaded!: () => void;
    const isLoaded = new Promise<void>((resolve) => (loaded = resolve));
    const tx = t.db.transaction(async (tx) => {
      const r = await loadAccountSnapshot(tx, 'locked', NOW, { revertNoticeWindowMs: WINDOW });
      expect(r.ok).toBe(true);
      loaded();
      await held;
    });
    await isLoaded;
    await expect(
      t.raw.begin((sql) => sql`select id from accounts where id = 'locked' for update nowait`),
    ).rejects.toMatchObject({ code: '55P03' });
    release();
    await tx;
    const after = await t.raw.begin(
      (sql) => sql`select id from accounts where id = 'locked' for update nowait`,
    );
    expect(after).toHaveLength(1);
  });

  it('reports an unknown account as not-found', async () => {
    expect(await load('ghost')).toEqual({
      ok: false,
      code: 'not-found',
      reason: 'account ghost not found',
    });
  });

  it('rejects a malformed account id without querying', async () => {
    expect(expectInvalid(await load('a:b'))).toContain('account id "a:b" must match');
  });

  it('rejects an unknown time zone with a reason naming it', async () => {
    await upsertAccount(t.db, { id: 'bad-tz', currency: 'USD', timeZone: 'Mars/Olympus_Mons' });
    expect(expectInvalid(await load('bad-tz'))).toBe(
      'account bad-tz: time_zone: unknown IANA time zone "Mars/Olympus_Mons"',
    );
  });

  it('rejects a currency that is well-formed but not ISO 4217', async () => {
    await upsertAccount(t.db, { id: 'bad-cur', currency: 'XQZ' });
    expect(expectInvalid(await load('bad-cur'))).toBe(
      'account bad-cur: currency: unknown ISO 4217 currency "XQZ"',
    );
  });

  it('rejects malformed account thresholds JSON', async () => {
    await upsertAccount(t.db, {
      id: 'bad-thr',
      currency: 'USD',
      planAlertThresholds: [
        { kind: 'percent', percent: 20 },
        { kind: 'ratio', value: 0.1 },
      ],
    });
    const reason = expectInvalid(await load('bad-thr'));
    expect(reason).toMatch(/^account bad-thr: plan_alert_thresholds\.1\.kind: /);
  });

  it('rejects a percent threshold above 100 on a plan, naming the plan', async () => {
    await upsertAccount(t.db, { id: 'bad-plan-thr', currency: 'USD' });
    await upsertPlan(t.db, {
      id: 'p-bad-thr',
      accountId: 'bad-plan-thr',
      kind: 'minutes',
      totalUnits: 10,
      startsAt: days(-1),
      expiresAt: days(1),
      purchasedAt: days(-1),
      alertThresholds: [{ kind: 'percent', percent: 150 }],
    });
    expect(expectInvalid(await load('bad-plan-thr'))).toMatch(
      /^resource plan p-bad-thr: alert_thresholds\.0\.percent: /,
    );
  });

  it('rejects a negative quota that slipped past a looser billing schema', async () => {
    // Simulates a billing database running without this project's CHECK constraints.
    await t.raw`alter table accounts drop constraint accounts_protection_amount_non_negative`;
    await t.raw`alter table resource_plans drop constraint resource_plans_total_non_negative`;
    await t.raw`alter table resource_plans drop constraint resource_plans_used_within_total`;
    try {
      await upsertAccount(t.db, {
        id: 'neg-quota',
        currency: 'USD',
        protectionCustom: true,
        protectionAmountMinor: -100,
      });
      expect(expectInvalid(await load('neg-quota'))).toBe(
        'account neg-quota: protection_amount_minor: must be >= 0, got -100',
      );

      await upsertAccount(t.db, { id: 'neg-plan', currency: 'USD' });
      await upsertPlan(t.db, {
        id: 'p-neg',
        accountId: 'neg-plan',
        kind: 'minutes',
        totalUnits: -5,
        startsAt: days(-1),
        expiresAt: days(1),
        purchasedAt: days(-1),
      });
      expect(expectInvalid(await load('neg-plan'))).toBe(
        'resource plan p-neg: total_units: must be >= 0, got -5',
      );
    } finally {
      await t.raw`delete from resource_plans where id = 'p-neg'`;
      await t.raw`delete from accounts where id in ('neg-quota', 'neg-plan')`;
      await t.raw`alter table accounts add constraint accounts_protection_amount_non_negative
        check (protection_amount_minor is null or protection_amount_minor between 0 and 9007199254740991)`;
      await t.raw`alter table resource_plans add constraint resource_plans_total_non_negative
        check (total_units between 0 and 9007199254740991)`;
      await t.raw`alter table resource_plans add constraint resource_plans_used_within_total
        check (used_units <= total_units)`;
    }
  });

  it('one bad account does not affect loading another', async () => {
    await upsertAccount(t.db, { id: 'good-neighbour', currency: 'EUR', timeZone: 'Europe/Berlin' });
    await upsertAccount(t.db, {
      id: 'bad-neighbour',
      currency: 'EUR',
      timeZone: 'Europe/Atlantis',
    });
    const [bad, good] = await Promise.all([load('bad-neighbour'), load('good-neighbour')]);
    expect(bad.ok).toBe(false);
    expect(good.ok && good.snapshot.timeZone).toBe('Europe/Berlin');
  });
});

describe('mapAccountSnapshot (rows the database constraints would refuse)', () => {
  const base: AccountRows = {
    account: {
      id: 'm',
      currency: 'USD',
      availableBalanceMinor: 0,
      earliestUnpaidDueAt: null,
      lowBalanceQuietUntil: null,
      lowBalance: false,
      evaluatedAt: null,
      sourceVersion: 0,
      sourceHash: null,
      timeZone: 'UTC',
      locale: 'en',
      email: null,
      phone: null,
      notifyEmail: true,
      notifySms: true,
      smsOptedOut: false,
      emailBounced: false,
      lowBalanceThresholdMinor: null,
      protectionCustom: false,
      protectionAmountMinor: null,
      protectionDurationSeconds: null,
      planAlertThresholds: null,
      enforcementState: 'active',
      episodeSeq: 0,
      episodeStartedAt: null,
      lastEpisodeEndedAt: null,
      version: 0,
      createdAt: NOW,
      updatedAt: NOW,
    },
    bills: [],
    services: [],
    studioInstances: [],
    plans: [],
  };

  it('accepts the base rows', () => {
    expect(mapAccountSnapshot(base).ok).toBe(true);
  });

  it.each([
    [
      'negative protection duration',
      { protectionCustom: true, protectionDurationSeconds: -1 },
      'account m: protection_duration_seconds: must be > 0, got -1',
    ],
    [
      'fractional balance',
      { availableBalanceMinor: 1.5 },
      'account m: available_balance_minor: must be a safe integer',
    ],
    [
      'open episode with seq 0',
      { episodeStartedAt: NOW },
      'account m: episode_seq: an open episode (episode_started_at set) needs episode_seq > 0',
    ],
    [
      'unknown enforcement state',
      { enforcementState: 'frozen' as 'active' },
      'account m: enforcement_state: ',
    ],
    ['malformed locale', { locale: 'en_US!' }, 'account m: locale: invalid BCP 47 locale "en_US!"'],
    [
      'thresholds not an array',
      { planAlertThresholds: { kind: 'percent', percent: 5 } },
      'account m: plan_alert_thresholds: ',
    ],
  ])('account: %s', (_name, patch, reason) => {
    const result = mapAccountSnapshot({ ...base, account: { ...base.account, ...patch } });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason.startsWith(reason)).toBe(true);
  });

  it('a negative bill amount names the bill', () => {
    const result = mapAccountSnapshot({
      ...base,
      bills: [
        {
          id: 'b-neg',
          accountId: 'm',
          product: 'live',
          amountMinor: -10,
          paidMinor: 0,
          sourceVersion: 0,
          sourceHash: null,
          issuedAt: NOW,
          dueAt: NOW,
          status: 'unpaid',
          createdAt: NOW,
          updatedAt: NOW,
        },
      ],
    });
    expect(result).toEqual({
      ok: false,
      code: 'invalid',
      reason: 'bill b-neg: amount_minor: must be >= 0, got -10',
    });
  });
});
