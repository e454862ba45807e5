import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

/**
 * No transaction is open while the daemon waits for the network: the control plane's answer,
 * the SMS API's answer. Each provider here holds its answer for a while; meanwhile the
 * daemon's sessions on its database are read from pg_stat_activity. A transaction held across
 * the call shows as a session `idle in transaction` for the whole hold (a transaction between
 * two of its statements is idle only for a round trip).
 */

const HOLD_MS = 1_500;
let h: NotifyHarness;

beforeAll(async () => {
  h = await startNotifyHarness();
});

afterAll(async () => {
  await h?.stop();
});

async function overdueAccount(id: string): Promise<void> {
  await h.t.raw`insert into accounts (id, currency, email, phone, notify_email)
                values (${id}, 'USD', ${`${id}@example.com`}, '+15551234567', false)`;
  await h.t
    .raw`insert into services (id, account_id, kind) values (${`${id}-s`}, ${id}, 'streaming')`;
  await h.t.raw`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
                values (${`${id}-b`}, ${id}, 'live', 888800, now() - interval '2 days',
                        now() - interval '1 hour')`;
}

/** The daemon's sessions idle inside a transaction for more than half the hold. */
async function heldTransactions(): Promise<{ state: string; query: string }[]> {
  return h.t.raw<{ state: string; query: string }[]>`
    select state, left(query, 120) as query from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid()
       and state like 'idle in transaction%'
       and now() - state_change > ${`${HOLD_MS / 2} milliseconds`}::interval`;
}

describe('no transaction is open across a network call', () => {
  it('while the control plane and the SMS API take their time, no session idles in a transaction', async () => {
    const seen: { state: string; query: string }[][] = [];
    let cpHeld = 0;
    h.cp.onCall = async () => {
      cpHeld += 1;
      await new Promise((r) => setTimeout(r, HOLD_MS));
      seen.push(await heldTransactions());
    };
    let release!: () => void;
    const smsHeld = new Promise<void>((resolve) => (release = resolve));
    h.twilio.script({ kind: 'accept-then-hold', until: smsHeld });
    try {
      await overdueAccount('nocall-1');
      await waitFor(() => cpHeld >= 1 && h.twilio.messages.length >= 1, 30_000, 'both calls held');
      await new Promise((r) => setTimeout(r, HOLD_MS));
      seen.push(await heldTransactions());
      release();
      await waitFor(() => h.cp.calls.length >= 1, 30_000, 'the suspension answered');
    } finally {
      h.cp.onCall = null;
      release();
    }
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.flat()).toEqual([]);
    // The probe can see a held transaction: one opened here and left idle is found.
    const probe = h.t.raw.reserve();
    const conn = await probe;
    try {
      await conn`begin`;
      await conn`select 1`;
      await new Promise((r) => setTimeout(r, HOLD_MS));
      expect((await heldTransactions()).length).toBe(1);
      await conn`rollback`;
    } finally {
      conn.release();
    }
  });
});
