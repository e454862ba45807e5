import { readFileSync } from 'node:fs';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/adapters/db/migrate';
import {
  accounts,
  bills,
  enforcementEvents,
  notifications,
  orders,
  outbox,
  resourcePlans,
  sdkLicenses,
  services,
  studioInstances,
  usageRecords,
} from '../../src/adapters/db/schema';
import { createTestDatabase, pgError, type TestDatabase } from '../support/db';

const T0 = new Date('2025-03-01T00:00:00.000Z');
const T1 = new Date('2025-03-15T12:30:45.123Z');
const T2 = new Date('2025-04-01T00:00:00.000Z');
/** Above 2^32: proves bigint columns are not truncated to int4 and read back exactly. */
const BIG = 5_000_000_000_123;

const ALL_TABLES = [
  'accounts',
  'bills',
  'breaker_ledger',
  'breaker_state',
  'control_events',
  'control_pauses',
  'control_state',
  'enforcement_events',
  'notifications',
  'orders',
  'outbox',
  'payment_reversals',
  'payments',
  'resource_plans',
  'sdk_licenses',
  'services',
  'sms_early_callbacks',
  'studio_instances',
  'topups',
  'usage_records',
];

async function tableNames(t: TestDatabase): Promise<string[]> {
  const rows = await t.raw<{ table_name: string }[]>`
    select table_name from information_schema.tables
    where table_schema = 'public' order by table_name`;
  return rows.map((r) => r.table_name);
}

describe('migrations', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    await t.drop();
  });

  it('create every table on an empty database, and a second run is a no-op', async () => {
    expect(await tableNames(t)).toEqual([]);

    await migrate(t.db);
    expect(await tableNames(t)).toEqual(ALL_TABLES);
    const journal = JSON.parse(
      readFileSync(new URL('../../drizzle/meta/_journal.json', import.meta.url), 'utf8'),
    ) as { entries: unknown[] };
    expect(journal.entries.length).toBeGreaterThanOrEqual(3);
    const applied = await t.raw`select hash from drizzle.__drizzle_migrations`;
    expect(applied).toHaveLength(journal.entries.length);

    await migrate(t.db);
    expect(await tableNames(t)).toEqual(ALL_TABLES);
    expect(await t.raw`select hash from drizzle.__drizzle_migrations`).toHaveLength(
      journal.entries.length,
    );
  });

  it('create the partial indexes the scans rely on', async () => {
    const rows = await t.raw<{ indexname: string; indexdef: string }[]>`
      select indexname, indexdef from pg_indexes
      where schemaname = 'public' and indexdef like '%WHERE%' order by indexname`;
    expect(rows.map((r) => r.indexname)).toEqual([
      'accounts_enforcement_state_idx',
      'accounts_low_balance_idx',
      'bills_account_unpaid_idx',
      'bills_unpaid_due_idx',
      'breaker_ledger_admitted_idx',
      'breaker_ledger_held_idx',
      'enforcement_events_service_changes_idx',
      'notifications_failed_updated_idx',
      'notifications_final_updated_idx',
      'notifications_pending_not_before_idx',
      'notifications_provider_message_idx',
      'outbox_dispatched_id_idx',
      'outbox_failed_updated_idx',
      'outbox_finished_updated_idx',
      'outbox_pending_available_idx',
      'outbox_unfinished_effect_service_idx',
      'studio_instances_release_due_idx',
    ]);
  });
});

describe('schema', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
    await t.db.insert(accounts).values([
      { id: 'acc-1', currency: 'USD' },
      { id: 'acc-2', currency: 'EUR' },
    ]);
  });
  afterAll(async () => {
    await t.drop();
  });

  describe('round-trips', () => {
    it('accounts: every column, defaults applied', async () => {
      await t.db.insert(accounts).values({
        id: 'rt.account_A-1',
        currency: 'JPY',
        availableBalanceMinor: -BIG,
        timeZone: 'Asia/Tokyo',
        locale: 'ja-JP',
        email: 'owner@example.com',
        phone: '+819012345678',
        lowBalanceThresholdMinor: 2_000,
        protectionCustom: true,
        protectionAmountMinor: BIG,
        protectionDurationSeconds: 86_400,
        planAlertThresholds: [{ kind: 'units', units: 50 }],
        enforcementState: 'protected',
        episodeSeq: 3,
        episodeStartedAt: T1,
        lastEpisodeEndedAt: T0,
      });
      const [row] = await t.db.select().from(accounts).where(eq(accounts.id, 'rt.account_A-1'));
      expect(row).toMatchObject({
        id: 'rt.account_A-1',
        currency: 'JPY',
        availableBalanceMinor: -BIG,
        timeZone: 'Asia/Tokyo',
        locale: 'ja-JP',
        email: 'owner@example.com',
        phone: '+819012345678',
        notifyEmail: true,
        notifySms: true,
        smsOptedOut: false,
        emailBounced: false,
        lowBalanceThresholdMinor: 2_000,
        protectionCustom: true,
        protectionAmountMinor: BIG,
        protectionDurationSeconds: 86_400,
        planAlertThresholds: [{ kind: 'units', units: 50 }],
        enforcementState: 'protected',
        episodeSeq: 3,
        episodeStartedAt: T1,
        lastEpisodeEndedAt: T0,
        version: 0,
      });
      expect(row?.createdAt).toBeInstanceOf(Date);
      expect(row?.updatedAt).toBeInstanceOf(Date);

      const [defaults] = await t.db.select().from(accounts).where(eq(accounts.id, 'acc-1'));
      expect(defaults).toMatchObject({
        availableBalanceMinor: 0,
        timeZone: 'UTC',
        locale: 'en',
        email: null,
        phone: null,
        lowBalanceThresholdMinor: null,
        protectionCustom: false,
        protectionAmountMinor: null,
        protectionDurationSeconds: null,
        planAlertThresholds: null,
        enforcementState: 'active',
        episodeSeq: 0,
        episodeStartedAt: null,
        version: 0,
      });
      // jsonb stores a real array, not a JSON string (a known pitfall of some driver versions).
      const [kind] = await t.raw<{ kind: string }[]>`
        select jsonb_typeof(plan_alert_thresholds) as kind from accounts where id = 'rt.account_A-1'`;
      expect(kind?.kind).toBe('array');
    });

    it('bills', async () => {
      const bill = {
        id: 'bill-1',
        accountId: 'acc-1',
        product: 'oss',
        amountMinor: BIG,
        paidMinor: 1,
        issuedAt: T0,
        dueAt: T1,
        status: 'unpaid' as const,
      };
      await t.db.insert(bills).values(bill);
      const [row] = await t.db.select().from(bills).where(eq(bills.id, 'bill-1'));
      expect(row).toMatchObject(bill);
    });

    it('services and studio instances', async () => {
      const service = {
        id: 'svc-studio',
        accountId: 'acc-1',
        kind: 'studio' as const,
        planType: 'duration' as const,
        status: 'suspended' as const,
        overdueHold: true,
        operatorHold: false,
        overdueEpisodeSeq: 2,
        suspendedAt: T1,
      };
      await t.db.insert(services).values(service);
      const [svc] = await t.db.select().from(services).where(eq(services.id, 'svc-studio'));
      expect(svc).toMatchObject({ ...service, resumedAt: null, releasedAt: null });

      const instance = {
        id: 'studio-1',
        accountId: 'acc-1',
        serviceId: 'svc-studio',
        name: 'Main studio',
        streaming: true,
        releaseDueAt: T2,
        releaseEpisodeSeq: 2,
      };
      await t.db.insert(studioInstances).values(instance);
      const [inst] = await t.db
        .select()
        .from(studioInstances)
        .where(eq(studioInstances.id, 'studio-1'));
      expect(inst).toMatchObject({ ...instance, releasedAt: null });
    });

    it('sdk licenses, orders and resource plans (linked both ways)', async () => {
      await t.db.insert(sdkLicenses).values({
        id: 'lic-1',
        accountId: 'acc-1',
        kind: 'license',
        activatedAt: T1,
      });
      await t.db.insert(orders).values({
        id: 'ord-1',
        accountId: 'acc-1',
        productType: 'resource-plan',
        cashPaidMinor: 9_900,
        voucherPaidMinor: 100,
        couponPaidMinor: 0,
        promotionId: 'promo-2025',
        promotionRules: { refundable: false },
        createdAt: T0,
      });
      const plan = {
        id: 'plan-1',
        accountId: 'acc-1',
        kind: 'transcoding-minutes',
        totalUnits: BIG,
        usedUnits: 7,
        startsAt: T0,
        expiresAt: T2,
        purchasedAt: T0,
        alertThresholds: [{ kind: 'percent', percent: 10 }],
        sdkLicenseId: 'lic-1',
        orderId: 'ord-1',
      };
      await t.db.insert(resourcePlans).values(plan);
      await t.db
        .update(orders)
        .set({ resourcePlanId: 'plan-1', sdkLicenseId: 'lic-1' })
        .where(eq(orders.id, 'ord-1'));

      const [p] = await t.db.select().from(resourcePlans).where(eq(resourcePlans.id, 'plan-1'));
      expect(p).toMatchObject(plan);
      const [o] = await t.db.select().from(orders).where(eq(orders.id, 'ord-1'));
      expect(o).toMatchObject({
        productType: 'resource-plan',
        cashPaidMinor: 9_900,
        voucherPaidMinor: 100,
        couponPaidMinor: 0,
        promotionId: 'promo-2025',
        promotionRules: { refundable: false },
        gifts: [],
        resourcePlanId: 'plan-1',
        sdkLicenseId: 'lic-1',
        createdAt: T0,
        refundedAt: null,
      });
      const [l] = await t.db.select().from(sdkLicenses).where(eq(sdkLicenses.id, 'lic-1'));
      expect(l).toMatchObject({ kind: 'license', activatedAt: T1 });
    });

    it('usage records (source id unique per account)', async () => {
      const record = {
        accountId: 'acc-1',
        product: 'live',
        metric: 'egress-bytes',
        quantity: BIG,
        recordedAt: T1,
        sourceId: 'batch-7.line-3',
      };
      const [inserted] = await t.db.insert(usageRecords).values(record).returning();
      expect(inserted).toMatchObject(record);
      expect(typeof inserted?.id).toBe('number');
      // Same source id on another account is fine; twice on the same account is not.
      await t.db.insert(usageRecords).values({ ...record, accountId: 'acc-2' });
      const err = await pgError(() => t.db.insert(usageRecords).values(record));
      expect(err).toEqual({ code: '23505', constraint: 'usage_records_account_source_unique' });
    });

    it('enforcement events, outbox and notifications', async () => {
      const [event] = await t.db
        .insert(enforcementEvents)
        .values({
          accountId: 'no such account: logged anyway',
          kind: 'invalid-snapshot',
          detail: { reason: 'time_zone' },
        })
        .returning();
      expect(event).toMatchObject({
        accountId: 'no such account: logged anyway',
        kind: 'invalid-snapshot',
        episodeSeq: null,
        detail: { reason: 'time_zone' },
        actor: 'daemon',
        idempotencyKey: null,
      });

      const [box] = await t.db
        .insert(outbox)
        .values({
          idempotencyKey: 'suspend-v1-acc-1-2',
          kind: 'suspend-services',
          accountId: 'acc-1',
          payload: { accountId: 'acc-1', episodeSeq: 2 },
          availableAt: T2,
        })
        .returning();
      expect(box).toMatchObject({
        idempotencyKey: 'suspend-v1-acc-1-2',
        payload: { accountId: 'acc-1', episodeSeq: 2 },
        status: 'pending',
        attempts: 0,
        availableAt: T2,
        lastError: null,
      });

      const [msg] = await t.db
        .insert(notifications)
        .values({
          dedupeKey: 'suspended-v1-acc-1-2-sms',
          accountId: 'acc-1',
          channel: 'sms',
          template: 'suspended',
          locale: 'zh-CN',
          recipient: '+8613800000000',
          params: { overdueMinor: 12_345, products: ['live', 'oss'] },
          notBefore: T1,
        })
        .returning();
      expect(msg).toMatchObject({
        dedupeKey: 'suspended-v1-acc-1-2-sms',
        channel: 'sms',
        params: { overdueMinor: 12_345, products: ['live', 'oss'] },
        status: 'pending',
        attempts: 0,
        providerId: null,
        messageId: null,
        notBefore: T1,
        sentAt: null,
        deliveredAt: null,
      });
    });
  });

  describe('constraints reject rows that break the contract', () => {
    const bill = {
      accountId: 'acc-1',
      product: 'live',
      amountMinor: 100,
      issuedAt: T0,
      dueAt: T1,
    };

    it.each([
      ['a negative bill amount', { id: 'b-neg', amountMinor: -1 }, 'bills_amount_non_negative'],
      ['a negative paid amount', { id: 'b-negp', paidMinor: -5 }, 'bills_paid_non_negative'],
      ['a ":" in a bill id', { id: 'b:1' }, 'bills_id_format'],
      ['an unknown status', { id: 'b-st', status: 'open' as 'paid' }, 'bills_status'],
      [
        'a due date before issue',
        { id: 'b-due', dueAt: new Date(T0.getTime() - 1) },
        'bills_due_after_issue',
      ],
      ['an amount beyond 2^53', { id: 'b-big', amountMinor: 2 ** 53 }, 'bills_amount_non_negative'],
    ])('bills: %s', async (_name, patch, constraint) => {
      const err = await pgError(() => t.db.insert(bills).values({ ...bill, ...patch }));
      expect(err).toEqual({ code: '23514', constraint });
    });

    it.each([
      ['a ":" in the id', { id: 'acc:1' }, 'accounts_id_format'],
      ['an id longer than 64', { id: 'a'.repeat(65) }, 'accounts_id_format'],
      ['a lower-case currency', { currency: 'usd' }, 'accounts_currency_format'],
      ['a non-letter currency', { currency: 'U5D' }, 'accounts_currency_format'],
      ['a phone not in E.164', { phone: '13800000000' }, 'accounts_phone_e164'],
      [
        'a negative protection amount',
        { protectionCustom: true, protectionAmountMinor: -1 },
        'accounts_protection_amount_non_negative',
      ],
      [
        'a zero protection duration',
        { protectionCustom: true, protectionDurationSeconds: 0 },
        'accounts_protection_duration_positive',
      ],
      [
        'protection values without protection_custom',
        { protectionAmountMinor: 100 },
        'accounts_protection_only_when_custom',
      ],
      [
        'thresholds that are not an array',
        { planAlertThresholds: { kind: 'percent' } },
        'accounts_plan_alert_thresholds_array',
      ],
      [
        'an unknown enforcement state',
        { enforcementState: 'frozen' as 'active' },
        'accounts_enforcement_state',
      ],
      [
        'an open episode without a sequence number',
        { episodeStartedAt: T0 },
        'accounts_open_episode_has_seq',
      ],
    ])('accounts: %s', async (_name, patch, constraint) => {
      const err = await pgError(() =>
        t.db.insert(accounts).values({ id: 'acc-bad', currency: 'USD', ...patch }),
      );
      expect(err).toEqual({ code: '23514', constraint });
    });

    it('a bill of an unknown account', async () => {
      const err = await pgError(() =>
        t.db.insert(bills).values({ ...bill, id: 'b-orphan', accountId: 'nobody' }),
      );
      expect(err).toEqual({ code: '23503', constraint: 'bills_account_id_accounts_id_fk' });
    });

    it.each([
      ['suspended without a hold', { status: 'suspended' as const }, 'services_suspended_iff_held'],
      ['active with a hold', { operatorHold: true }, 'services_suspended_iff_held'],
      [
        'an overdue hold without its episode',
        { status: 'suspended' as const, overdueHold: true },
        'services_overdue_hold_has_episode',
      ],
      [
        'released without released_at',
        { status: 'released' as const },
        'services_released_at_iff_released',
      ],
      ['an unknown kind', { kind: 'cdn' as 'other' }, 'services_kind'],
    ])('services: %s', async (_name, patch, constraint) => {
      const err = await pgError(() =>
        t.db
          .insert(services)
          .values({ id: 'svc-bad', accountId: 'acc-1', kind: 'streaming', ...patch }),
      );
      expect(err).toEqual({ code: '23514', constraint });
    });

    it('a studio instance on another account’s service', async () => {
      await t.db.insert(services).values({ id: 'svc-acc2', accountId: 'acc-2', kind: 'studio' });
      const err = await pgError(() =>
        t.db
          .insert(studioInstances)
          .values({ id: 'st-x', accountId: 'acc-1', serviceId: 'svc-acc2', name: 'x' }),
      );
      expect(err).toEqual({
        code: '23503',
        constraint: 'studio_instances_service_same_account_fk',
      });
    });

    it('a studio release due date without its episode', async () => {
      const err = await pgError(() =>
        t.db.insert(studioInstances).values({
          id: 'st-y',
          accountId: 'acc-2',
          serviceId: 'svc-acc2',
          name: 'y',
          releaseDueAt: T2,
        }),
      );
      expect(err).toEqual({ code: '23514', constraint: 'studio_instances_release_pending_pair' });
    });

    it.each([
      ['more used than total', { usedUnits: 11 }, 'resource_plans_used_within_total'],
      ['a negative total', { totalUnits: -1, usedUnits: 0 }, 'resource_plans_total_non_negative'],
      ['an expiry not after the start', { expiresAt: T0 }, 'resource_plans_expires_after_start'],
    ])('resource plans: %s', async (_name, patch, constraint) => {
      const err = await pgError(() =>
        t.db.insert(resourcePlans).values({
          id: 'plan-bad',
          accountId: 'acc-1',
          kind: 'minutes',
          totalUnits: 10,
          startsAt: T0,
          expiresAt: T2,
          purchasedAt: T0,
          ...patch,
        }),
      );
      expect(err).toEqual({ code: '23514', constraint });
    });

    it('orders: negative paid parts and non-array gifts', async () => {
      const order = { id: 'ord-bad', accountId: 'acc-1', productType: 'payg' as const };
      expect(
        await pgError(() => t.db.insert(orders).values({ ...order, couponPaidMinor: -1 })),
      ).toEqual({ code: '23514', constraint: 'orders_coupon_paid_non_negative' });
      expect(
        await pgError(() => t.db.insert(orders).values({ ...order, gifts: {} as unknown[] })),
      ).toEqual({
        code: '23514',
        constraint: 'orders_gifts_array',
      });
    });

    it('outbox and notification keys with ":"', async () => {
      expect(
        await pgError(() =>
          t.db
            .insert(outbox)
            .values({ idempotencyKey: 'a:b', kind: 'x', accountId: 'acc-1', payload: {} }),
        ),
      ).toEqual({ code: '23514', constraint: 'outbox_idempotency_key_format' });
      expect(
        await pgError(() =>
          t.db.insert(notifications).values({
            dedupeKey: 'a:b',
            accountId: 'acc-1',
            channel: 'email',
            template: 'resumed',
            locale: 'en',
            recipient: 'a@example.com',
            params: {},
          }),
        ),
      ).toEqual({ code: '23514', constraint: 'notifications_dedupe_key_format' });
    });
  });
});
