import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount, upsertBill, upsertService } from '../../src/adapters/db/billing-writers';
import { setEnforcementMode } from '../../src/adapters/db/control-store';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

const DAY = 86_400_000;
let h: NotifyHarness;

beforeAll(async () => {
  // Decides and queues messages, but sends none yet: the sender starts later in the test.
  h = await startNotifyHarness({}, { sendNotifications: false });
});

afterAll(async () => {
  await h?.stop();
});

describe('enforcement mode and customer messages', () => {
  it('a message queued before the switch to shadow is not sent in shadow, and is sent once after enforce', async () => {
    const now = Date.now();
    // One transaction: an evaluation between the account and its bill would see a negative
    // balance with nothing overdue and queue a low-balance reminder first.
    await h.t.db.transaction(async (tx) => {
      await upsertAccount(tx, {
        id: 'msg1',
        currency: 'CNY',
        availableBalanceMinor: -50_000,
        timeZone: 'Asia/Shanghai',
        locale: 'en',
        email: 'msg1@example.com',
        phone: '+8613800000000',
        protectionCustom: true,
        protectionAmountMinor: 0,
      });
      await upsertService(tx, { id: 'msg1-live', accountId: 'msg1', kind: 'streaming' });
      await upsertBill(tx, {
        id: 'msg1-bill',
        accountId: 'msg1',
        product: 'live',
        amountMinor: 50_000,
        paidMinor: 0,
        issuedAt: new Date(now - 20 * DAY),
        dueAt: new Date(now - 10 * DAY),
      });
    });
    await waitFor(
      async () => {
        const [row] = await h.t.raw<{ n: string }[]>`
          select count(*) as n from notifications where account_id = 'msg1' and status = 'pending'`;
        return Number(row?.n) === 2;
      },
      30_000,
      'the suspension notice queued on both channels',
    );

    await setEnforcementMode(h.t.db, { mode: 'shadow', actor: 'operator:test', reason: 'drill' });
    await h.daemon.close();
    h.daemon = await h.start({ sendNotifications: true });
    await new Promise((r) => setTimeout(r, 4_000));
    expect(h.sink.accepted()).toBe(0);
    expect(h.twilio.messages).toHaveLength(0);
    const held = await h.t.raw<{ status: string }[]>`
      select status from notifications where account_id = 'msg1'`;
    expect(held.map((r) => r.status)).toEqual(['pending', 'pending']);

    await setEnforcementMode(h.t.db, { mode: 'enforce', actor: 'operator:test', reason: 'done' });
    await h.sink.waitFor(1, 30_000);
    await waitFor(() => h.twilio.messages.length === 1, 30_000, 'the SMS sent');
    await waitFor(
      async () => {
        const rows = await h.t.raw<{ status: string }[]>`
          select status from notifications where account_id = 'msg1' and status = 'pending'`;
        return rows.length === 0;
      },
      10_000,
      'no message left pending',
    );
    await new Promise((r) => setTimeout(r, 1_000));
    expect(h.sink.accepted()).toBe(1);
    expect(h.sink.duplicates()).toBe(0);
    expect(h.twilio.messages).toHaveLength(1);
    expect(h.twilio.duplicates()).toBe(0);
  }, 90_000);
});
