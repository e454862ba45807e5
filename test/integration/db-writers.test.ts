import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount, upsertBill, upsertService } from '../../src/adapters/db/billing-writers';
import {
  appendEvent,
  insertNotification,
  insertNotifications,
  insertOutbox,
  insertOutboxRows,
} from '../../src/adapters/db/daemon-writers';
import { reopenOutboxKeys } from '../../src/adapters/db/outbox-store';
import { enforcementEvents, notifications, outbox } from '../../src/adapters/db/schema';
import { createTestDatabase, pgError, type TestDatabase } from '../support/db';

const T0 = new Date('2025-01-01T00:00:00.000Z');
const T1 = new Date('2025-01-02T00:00:00.000Z');

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await upsertAccount(t.db, { id: 'acc-1', currency: 'USD' });
});
afterAll(async () => {
  await t.drop();
});

describe('insertOutbox', () => {
  it('inserts once per idempotency key; the first payload wins', async () => {
    const entry = {
      idempotencyKey: 'suspend-v1-acc-1-1',
      kind: 'suspend-services',
      accountId: 'acc-1',
      payload: { accountId: 'acc-1', episodeSeq: 1 },
      availableAt: T1,
    };
    expect(await insertOutbox(t.db, entry)).toBe(true);
    expect(await insertOutbox(t.db, { ...entry, payload: { other: true } })).toBe(false);
    const rows = await t.db
      .select()
      .from(outbox)
      .where(eq(outbox.idempotencyKey, 'suspend-v1-acc-1-1'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ payload: entry.payload, availableAt: T1, status: 'pending' });
  });

  it('deduplicates within one transaction and under concurrent inserts', async () => {
    const entry = {
      idempotencyKey: 'resume-v1-acc-1-1',
      kind: 'resume-services',
      accountId: 'acc-1',
      payload: { accountId: 'acc-1' },
    };
    const results = await t.db.transaction(async (tx) => [
      await insertOutbox(tx, entry),
      await insertOutbox(tx, entry),
    ]);
    expect(results).toEqual([true, false]);
    const concurrent = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        insertOutbox(t.db, { ...entry, idempotencyKey: 'race-v1-acc-1', payload: { i } }),
      ),
    );
    expect(concurrent.filter(Boolean)).toHaveLength(1);
  });

  it('refuses a key containing ":" (BullMQ job ids)', async () => {
    const err = await pgError(() =>
      insertOutbox(t.db, { idempotencyKey: 'x:1', kind: 'k', accountId: 'acc-1', payload: {} }),
    );
    expect(err).toEqual({ code: '23514', constraint: 'outbox_idempotency_key_format' });
  });
});

describe('insertNotification', () => {
  it('inserts once per dedupe key', async () => {
    const message = {
      dedupeKey: 'low-balance-v1-acc-1-2025-01-01-email',
      accountId: 'acc-1',
      channel: 'email' as const,
      template: 'low-balance',
      locale: 'en',
      recipient: 'owner@example.com',
      params: { balanceMinor: 120 },
      notBefore: T0,
    };
    expect(await insertNotification(t.db, message)).toBe(true);
    expect(await insertNotification(t.db, { ...message, recipient: 'x@example.com' })).toBe(false);
    const rows = await t.db
      .select()
      .from(notifications)
      .where(eq(notifications.dedupeKey, message.dedupeKey));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      recipient: 'owner@example.com',
      params: { balanceMinor: 120 },
      notBefore: T0,
      status: 'pending',
    });
  });

  it('sends a superseded low-balance reminder back to pending with its outbox row, and nothing else; a key twice in one call is one row', async () => {
    const base = {
      accountId: 'acc-1',
      channel: 'sms' as const,
      locale: 'en',
      recipient: '+15550000001',
      notBefore: T0,
    };
    const lowBal = { ...base, dedupeKey: 'lowbal-acc-1-d1-sms', template: 'low-balance' };
    const other = { ...base, dedupeKey: 'reminder-acc-1-1-d1-sms', template: 'overdue-reminder' };
    const sent = { ...base, dedupeKey: 'lowbal-acc-1-d0-sms', template: 'low-balance' };
    const first = [
      { ...lowBal, params: { balanceMinor: 100 } },
      { ...other, params: {} },
      { ...sent, params: { balanceMinor: 50 } },
    ];
    expect(await insertNotifications(t.db, first)).toEqual(
      new Set([lowBal.dedupeKey, other.dedupeKey, sent.dedupeKey]),
    );
    const notify = (key: string) => ({
      idempotencyKey: key,
      kind: 'notify',
      accountId: 'acc-1',
      payload: { channel: 'sms' },
    });
    await insertOutboxRows(
      t.db,
      first.map((m) => notify(m.dedupeKey)),
    );
    const superseded = [lowBal.dedupeKey, other.dedupeKey];
    await t.raw`update notifications set status = 'superseded', last_error = 'no longer true'
                 where dedupe_key in ${t.raw(superseded)}`;
    await t.raw`update outbox set status = 'superseded', last_error = 'no longer true'
                 where idempotency_key in ${t.raw(superseded)}`;
    await t.raw`update notifications set status = 'sent', provider_id = 'p'
                 where dedupe_key = ${sent.dedupeKey}`;
    await t.raw`update outbox set status = 'done' where idempotency_key = ${sent.dedupeKey}`;

    const T2 = new Date('2025-01-01T03:00:00.000Z');
    const again = [
      { ...lowBal, params: { balanceMinor: 40 }, recipient: '+15550000002', notBefore: T2 },
      { ...lowBal, params: { balanceMinor: 30 }, notBefore: T2 },
      { ...other, params: {} },
      { ...sent, params: { balanceMinor: 10 } },
    ];
    const reopened = await insertNotifications(t.db, again);
    expect(reopened).toEqual(new Set([lowBal.dedupeKey]));
    // Every outbox row exists already: the evaluation reopens those of the reopened reminders.
    expect(
      await insertOutboxRows(t.db, [
        ...again.map((m) => notify(m.dedupeKey)),
        notify(lowBal.dedupeKey),
      ]),
    ).toEqual(new Set());
    expect(await reopenOutboxKeys(t.db, [...reopened, sent.dedupeKey], 'superseded')).toEqual([
      lowBal.dedupeKey,
    ]);

    const states = await t.raw<
      {
        dedupe_key: string;
        status: string;
        recipient: string;
        params: unknown;
        last_error: string | null;
        outbox: string;
      }[]
    >`select n.dedupe_key, n.status, n.recipient, n.params, n.last_error, o.status as outbox
        from notifications n join outbox o on o.idempotency_key = n.dedupe_key
       where n.dedupe_key in ${t.raw([lowBal.dedupeKey, other.dedupeKey, sent.dedupeKey])}
       order by n.id`;
    expect(states).toEqual([
      {
        dedupe_key: lowBal.dedupeKey,
        status: 'pending',
        recipient: '+15550000002',
        params: { balanceMinor: 40 },
        last_error: null,
        outbox: 'pending',
      },
      {
        dedupe_key: other.dedupeKey,
        status: 'superseded',
        recipient: '+15550000001',
        params: {},
        last_error: 'no longer true',
        outbox: 'superseded',
      },
      {
        dedupe_key: sent.dedupeKey,
        status: 'sent',
        recipient: '+15550000001',
        params: { balanceMinor: 50 },
        last_error: null,
        outbox: 'done',
      },
    ]);
  });
});

describe('appendEvent', () => {
  it('always appends without a key, once with a key', async () => {
    const first = await appendEvent(t.db, { accountId: 'acc-1', kind: 'scan-skipped' });
    const second = await appendEvent(t.db, { accountId: 'acc-1', kind: 'scan-skipped' });
    expect(first).not.toBeNull();
    expect(second).not.toBeNull();
    expect(second).not.toBe(first);

    const event = {
      accountId: 'acc-1',
      kind: 'episode-opened',
      episodeSeq: 1,
      detail: { overdueMinor: 500 },
      actor: 'operator:alice',
      idempotencyKey: 'open-v1-acc-1-1',
    };
    const id = await appendEvent(t.db, event);
    expect(typeof id).toBe('number');
    expect(await appendEvent(t.db, event)).toBeNull();
    const rows = await t.db
      .select()
      .from(enforcementEvents)
      .where(eq(enforcementEvents.accountId, 'acc-1'));
    expect(rows.map((r) => r.kind).sort()).toEqual([
      'episode-opened',
      'scan-skipped',
      'scan-skipped',
    ]);
    expect(rows.find((r) => r.kind === 'episode-opened')).toMatchObject({
      episodeSeq: 1,
      detail: { overdueMinor: 500 },
      actor: 'operator:alice',
    });
  });
});

describe('billing upserts', () => {
  it('update only the given fields, keep created_at and bump the account version', async () => {
    const created = await upsertAccount(t.db, {
      id: 'acc-up',
      currency: 'USD',
      email: 'a@example.com',
      availableBalanceMinor: 100,
    });
    expect(created.version).toBe(0);
    const updated = await upsertAccount(t.db, {
      id: 'acc-up',
      currency: 'USD',
      availableBalanceMinor: -400,
    });
    expect(updated).toMatchObject({
      availableBalanceMinor: -400,
      email: 'a@example.com',
      version: 1,
      createdAt: created.createdAt,
    });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
  });

  it('a bill payment and a service hold round-trip', async () => {
    const bill = {
      id: 'bill-up',
      accountId: 'acc-up',
      product: 'live',
      amountMinor: 1_000,
      issuedAt: T0,
      dueAt: T1,
    };
    await upsertBill(t.db, bill);
    const paid = await upsertBill(t.db, { ...bill, paidMinor: 1_000, status: 'paid' });
    expect(paid).toMatchObject({ amountMinor: 1_000, paidMinor: 1_000, status: 'paid' });

    await upsertService(t.db, { id: 'svc-up', accountId: 'acc-up', kind: 'streaming' });
    const held = await upsertService(t.db, {
      id: 'svc-up',
      accountId: 'acc-up',
      kind: 'streaming',
      status: 'suspended',
      overdueHold: true,
      overdueEpisodeSeq: 1,
      suspendedAt: T1,
    });
    expect(held).toMatchObject({ status: 'suspended', overdueHold: true, suspendedAt: T1 });
  });
});
