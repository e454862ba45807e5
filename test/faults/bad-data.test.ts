import { expect } from 'vitest';
import { pgError } from '../support/db';
import { describeFault, report, seedOverdue, sleep } from './harness';

/**
 * Scenario 7: the billing system writes bad rows. What the schema refuses is shown with the
 * constraint that refused it; what it lets through (an unknown time zone or currency, a negative
 * quota threshold in JSON, no contact at all) must not stop the daemon: the bad account is
 * skipped with one enforcement event that says why, and every other account goes on.
 */

describeFault(
  {
    title: 'bad data from the billing system',
    test: 'skips the bad account with a reason and enforces the rest',
    env: { SCAN_INTERVAL: '2s' },
  },
  async (w) => {
    const sql = w.raw;
    const good = await seedOverdue(sql, { prefix: 'g', count: 50 });

    // Refused by the schema: the constraint names are the evidence.
    const refusals: Record<string, string | undefined> = {};
    const refused = async (what: string, run: () => Promise<unknown>) => {
      const e = await pgError(run);
      refusals[what] = `${e.code} ${e.constraint}`;
    };
    const insertAccount = (cols: Record<string, unknown>) =>
      sql`insert into accounts ${sql(cols as Record<string, string>)}`;
    await refused('negative protection amount', () =>
      insertAccount({
        id: 'bad-q1',
        currency: 'USD',
        protection_custom: true,
        protection_amount_minor: -1,
      }),
    );
    await refused('negative protection duration', () =>
      insertAccount({
        id: 'bad-q2',
        currency: 'USD',
        protection_custom: true,
        protection_duration_seconds: -60,
      }),
    );
    await refused('negative low-balance threshold', () =>
      insertAccount({ id: 'bad-q3', currency: 'USD', low_balance_threshold_minor: -5 }),
    );
    await refused('lower-case currency', () => insertAccount({ id: 'bad-c0', currency: 'usd' }));
    await refused('malformed email', () =>
      insertAccount({ id: 'bad-m1', currency: 'USD', email: 'not an address' }),
    );
    await refused('phone not E.164', () =>
      insertAccount({ id: 'bad-p1', currency: 'USD', phone: '0800 123' }),
    );
    await refused(
      'negative bill amount',
      () =>
        sql`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
          values ('bad-b', 'g-1', 'live', -100, now(), now())`,
    );
    await refused('id with a colon', () => insertAccount({ id: 'bad:colon', currency: 'USD' }));

    // Let through by the schema; the daemon must skip these with a reason.
    const bad: Record<string, Record<string, unknown>> = {
      'bad-tz': { time_zone: 'Mars/Olympus_Mons' },
      'bad-cur': { currency: 'ZZZ' },
      'bad-quota': { plan_alert_thresholds: sql.json([{ kind: 'units', units: -500 }]) },
      'bad-pct': { plan_alert_thresholds: sql.json([{ kind: 'percent', percent: 150 }]) },
    };
    for (const [id, cols] of Object.entries(bad)) {
      await insertAccount({ id, currency: 'USD', email: `${id}@example.com`, ...cols });
    }
    // No contact at all: not invalid (enforcement does not need one), but nobody can be told.
    await insertAccount({ id: 'no-contact', currency: 'USD' });
    for (const id of [...Object.keys(bad), 'no-contact']) {
      await sql`insert into services (id, account_id, kind) values (${`${id}-s`}, ${id}, 'streaming')`;
      await sql`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
                values (${`${id}-b`}, ${id}, 'live', 999999, now() - interval '2 days', now() - interval '1 hour')`;
    }

    const started = Date.now();
    w.spawn();
    await w.settle(120_000, async () => {
      const [row] = await sql<{ n: string }[]>`
        select count(*) as n from services where overdue_hold and account_id like 'g-%'`;
      return Number(row?.n) === good.length;
    });
    // A few more scans go by: the skipped accounts must not pile up events.
    await sleep(6_000);
    const events = await sql<
      { account_id: string; kind: string; reason: string | null; n: string }[]
    >`
      select account_id, kind, detail->>'reason' as reason, count(*) over (partition by account_id, kind) as n
        from enforcement_events
       where account_id like 'bad-%' or account_id = 'no-contact'
       order by account_id, kind`;
    const held = await sql<{ account_id: string }[]>`
      select account_id from services where overdue_hold`;
    const heldIds = new Set(held.map((r) => r.account_id));
    const inv = await w.check();
    report('bad-data', {
      refusals,
      skipped: Object.fromEntries(
        events.filter((e) => e.kind === 'invalid-snapshot').map((e) => [e.account_id, e.reason]),
      ),
      noContactEvents: events.filter((e) => e.account_id === 'no-contact').map((e) => e.kind),
      goodSuspended: good.filter((id) => heldIds.has(id)).length,
      totalMs: Date.now() - started,
      ...inv,
    });
    expect(Object.keys(refusals)).toHaveLength(8);
    for (const id of Object.keys(bad)) {
      const mine = events.filter((e) => e.account_id === id);
      expect(
        mine.map((e) => e.kind),
        id,
      ).toEqual(['invalid-snapshot']);
      expect(Number(mine[0]?.n), `${id}: one event however many scans`).toBe(1);
      expect(heldIds.has(id), `${id} not enforced`).toBe(false);
    }
    expect(events.find((e) => e.account_id === 'bad-tz')?.reason).toMatch(/time_zone/);
    expect(events.find((e) => e.account_id === 'bad-cur')?.reason).toMatch(/currency/);
    expect(events.find((e) => e.account_id === 'bad-quota')?.reason).toMatch(
      /plan_alert_thresholds/,
    );
    // The account without contact is enforced; the notice is recorded as unreachable.
    expect(heldIds.has('no-contact')).toBe(true);
    expect(events.filter((e) => e.account_id === 'no-contact').map((e) => e.kind)).toContain(
      'notice-unreachable',
    );
    expect(good.every((id) => heldIds.has(id))).toBe(true);
    expect(inv.problems).toEqual([]);
    expect(inv.emails).toBe(good.length);
    expect(inv.sms).toBe(good.length);
  },
);
