import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setEnforcementMode } from '../../src/adapters/db/control-store';
import { seedOverdue } from '../support/api-harness';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

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
    await seedOverdue(h.t.db, 'msg1');
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
