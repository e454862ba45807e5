import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/adapters/clock/clock';
import {
  upsertAccount,
  upsertBill,
  upsertService,
  upsertStudioInstance,
} from '../../src/adapters/db/billing-writers';
import { evaluateAccount, evaluateBatch } from '../../src/adapters/db/evaluation';
import { DEFAULT_RULES } from '../../src/domain/rules';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { startHarness, waitFor, type Harness } from '../support/daemon';

/**
 * Batch evaluation (src/adapters/db/evaluation.ts): a page of accounts in one transaction must
 * write exactly what evaluating each alone writes; accounts another transaction holds are
 * skipped and evaluated later, never dropped; one account whose writes fail does not fail the
 * others.
 */

const NOW = new Date('2026-06-10T08:00:00.000Z');
const DAY = 86_400_000;
const KINDS = [
  'overdue',
  'studio',
  'releasing',
  'protected',
  'low',
  'healthy',
  'bad-zone',
  'paid',
] as const;
type Kind = (typeof KINDS)[number];

async function seed(t: TestDatabase, id: string, kind: Kind): Promise<void> {
  const db = t.db;
  await upsertAccount(db, {
    id,
    currency: 'CNY',
    availableBalanceMinor: kind === 'low' ? 100 : kind === 'healthy' ? 1_000_000 : -50_000,
    timeZone: kind === 'bad-zone' ? 'Mars/Olympus' : 'Asia/Shanghai',
    locale: 'en',
    email: `${id}@example.com`,
    phone: '+8613800000000',
    protectionCustom: kind !== 'protected',
    protectionAmountMinor: kind === 'protected' ? null : 0,
    // A studio suspended a day ago whose release is due: the state the daemon left.
    ...(kind === 'releasing'
      ? {
          enforcementState: 'suspended',
          episodeSeq: 1,
          episodeStartedAt: new Date(NOW.getTime() - 10 * DAY),
        }
      : {}),
  });
  await upsertService(db, { id: `${id}-live`, accountId: id, kind: 'streaming' });
  if (kind === 'studio' || kind === 'releasing') {
    const releasing = kind === 'releasing';
    await upsertService(db, {
      id: `${id}-studio`,
      accountId: id,
      kind: 'studio',
      planType: 'duration',
      ...(releasing ? { status: 'suspended', overdueHold: true, overdueEpisodeSeq: 1 } : {}),
    });
    for (const n of [1, 2]) {
      await upsertStudioInstance(db, {
        id: `${id}-inst${String(n)}`,
        accountId: id,
        serviceId: `${id}-studio`,
        name: `Studio ${String(n)}`,
        ...(releasing
          ? { releaseDueAt: new Date(NOW.getTime() - 3_600_000), releaseEpisodeSeq: 1 }
          : {}),
      });
    }
  }
  if (kind === 'healthy' || kind === 'low') return;
  await upsertBill(db, {
    id: `${id}-bill`,
    accountId: id,
    product: 'live',
    amountMinor: kind === 'protected' ? 500 : 50_000,
    paidMinor: kind === 'paid' ? 50_000 : 0,
    issuedAt: new Date(NOW.getTime() - 20 * DAY),
    dueAt: new Date(NOW.getTime() - 10 * DAY),
  });
}

/** What evaluations wrote, with the batch's id prefix rewritten to the single runs'. */
async function written(t: TestDatabase, prefix: string): Promise<string[]> {
  const like = `${prefix}%`;
  const rows = [
    ...(await t.raw`
      select 'account' as t, id, enforcement_state, episode_seq, episode_started_at,
             last_episode_ended_at, low_balance_quiet_until, evaluated_at, version
        from accounts where id like ${like} order by id`),
    ...(await t.raw`
      select 'service' as t, id, status, overdue_hold, overdue_episode_seq, suspended_at,
             resumed_at, released_at
        from services where id like ${like} order by id`),
    ...(await t.raw`
      select 'instance' as t, id, release_due_at, release_episode_seq, released_at
        from studio_instances where id like ${like} order by id`),
    ...(await t.raw`
      select 'event' as t, account_id, kind, episode_seq, detail, actor, idempotency_key
        from enforcement_events where account_id like ${like} order by idempotency_key`),
    ...(await t.raw`
      select 'outbox' as t, idempotency_key, kind, account_id, payload, status,
             -- effects due at once are stamped with the transaction's own now()
             case when kind in ('wake', 'notify') then available_at end as available_at
        from outbox where account_id like ${like} order by idempotency_key`),
    ...(await t.raw`
      select 'message' as t, dedupe_key, channel, template, locale, recipient, params,
             status, not_before
        from notifications where account_id like ${like} order by dedupe_key`),
  ];
  return rows.map((r) => JSON.stringify(r).replaceAll(prefix, 'X'));
}

describe('batch evaluation in one transaction', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    await t.drop();
  });

  it('writes exactly what evaluating each account alone writes', async () => {
    const clock = manualClock(NOW);
    const batchIds: string[] = [];
    const singleIds: string[] = [];
    for (const [i, kind] of KINDS.entries()) {
      for (let n = 0; n < 3; n++) {
        const suffix = `${String(i)}${String(n)}`;
        await seed(t, `qqb${suffix}`, kind);
        await seed(t, `qqs${suffix}`, kind);
        batchIds.push(`qqb${suffix}`);
        singleIds.push(`qqs${suffix}`);
      }
    }
    const outcomes = await evaluateBatch(
      t.db,
      [...batchIds, 'qqbmissing'].map((accountId) => ({ accountId, actor: 'daemon' })),
      clock,
      DEFAULT_RULES,
      'skip',
    );
    for (const id of singleIds) await evaluateAccount(t.db, id, clock, DEFAULT_RULES, 'daemon');

    expect(outcomes.get('qqbmissing')).toEqual({ status: 'not-found' });
    const statuses = KINDS.map((kind, i) => [kind, outcomes.get(`qqb${String(i)}0`)?.status]);
    expect(Object.fromEntries(statuses)).toEqual({
      overdue: 'evaluated',
      studio: 'evaluated',
      releasing: 'evaluated',
      protected: 'evaluated',
      low: 'evaluated',
      healthy: 'evaluated',
      'bad-zone': 'invalid',
      paid: 'evaluated',
    });
    const batch = await written(t, 'qqb');
    // Not a vacuous comparison: suspensions, a scheduled release, messages and events are there.
    expect(batch.some((r) => r.includes('"status":"suspended"'))).toBe(true);
    expect(batch.some((r) => r.includes('"kind":"release-scheduled"'))).toBe(true);
    expect(batch.some((r) => r.includes('"kind":"studio-released"'))).toBe(true);
    expect(batch.some((r) => r.includes('"id":"X20-studio","status":"released"'))).toBe(true);
    expect(batch.some((r) => r.includes('"template":"low-balance"'))).toBe(true);
    expect(batch.some((r) => r.includes('"kind":"invalid-snapshot"'))).toBe(true);
    expect(batch.filter((r) => r.startsWith('{"t":"outbox"')).length).toBeGreaterThan(20);
    expect(batch).toEqual(await written(t, 'qqs'));

    // Evaluating again changes nothing but the evaluation instant.
    clock.advance(1_000);
    const again = await evaluateBatch(
      t.db,
      batchIds.map((accountId) => ({ accountId, actor: 'daemon' })),
      clock,
      DEFAULT_RULES,
      'skip',
    );
    const newEffects = [...again.values()].reduce(
      (n, o) => n + (o.status === 'evaluated' ? o.newEffects : 0),
      0,
    );
    expect(newEffects).toBe(0);
  });

  it('skips the accounts another transaction holds and evaluates the rest', async () => {
    const clock = manualClock(NOW);
    await seed(t, 'lockheld', 'overdue');
    await seed(t, 'lockfree', 'overdue');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = t.raw.begin(async (tx) => {
      await tx`select id from accounts where id = 'lockheld' for update`;
      locked();
      await held;
    });
    await isLocked;
    try {
      const outcomes = await evaluateBatch(
        t.db,
        ['lockheld', 'lockfree'].map((accountId) => ({ accountId, actor: 'daemon' })),
        clock,
        DEFAULT_RULES,
        'skip',
      );
      expect(outcomes.get('lockheld')).toEqual({ status: 'skipped' });
      expect(outcomes.get('lockfree')?.status).toBe('evaluated');
    } finally {
      release();
      await holder;
    }
    const [row] = await t.raw<{ evaluated_at: Date | null }[]>`
      select evaluated_at from accounts where id = 'lockheld'`;
    expect(row?.evaluated_at).toBeNull();
  });

  it('one account whose writes fail does not fail the others', async () => {
    const clock = manualClock(NOW);
    for (const id of ['failbad', 'failok1', 'failok2']) await seed(t, id, 'overdue');
    // The database refuses the events of one account (as a constraint the data breaks would).
    await t.raw.unsafe(`
      create function refuse_failbad() returns trigger language plpgsql as $$
      begin
        if new.account_id = 'failbad' then
          raise exception 'refused for the test' using errcode = '23514';
        end if;
        return new;
      end $$;
      create trigger refuse_failbad before insert on enforcement_events
        for each row execute function refuse_failbad();`);
    try {
      const outcomes = await evaluateBatch(
        t.db,
        ['failbad', 'failok1', 'failok2'].map((accountId) => ({ accountId, actor: 'daemon' })),
        clock,
        DEFAULT_RULES,
        'skip',
      );
      expect(outcomes.get('failbad')).toEqual({
        status: 'failed',
        error: 'writing its decisions failed (SQLSTATE 23514)',
      });
      expect(outcomes.get('failok1')?.status).toBe('evaluated');
      expect(outcomes.get('failok2')?.status).toBe('evaluated');
      const states = await t.raw<{ id: string; enforcement_state: string }[]>`
        select id, enforcement_state from accounts where id like 'fail%' order by id`;
      expect(states.map((s) => [s.id, s.enforcement_state])).toEqual([
        ['failbad', 'active'],
        ['failok1', 'suspended'],
        ['failok2', 'suspended'],
      ]);
    } finally {
      await t.raw.unsafe(`drop trigger refuse_failbad on enforcement_events;
                          drop function refuse_failbad();`);
    }
  });
});

describe('the daemon evaluates a scan in pages', () => {
  let h: Harness;
  beforeAll(async () => {
    // 120 suspensions at once: more than the breaker's default admits (breaker.test.ts).
    h = await startHarness({ EVALUATE_BATCH_SIZE: '50', SUSPENSION_BREAKER: 'off' });
  });
  afterAll(async () => {
    await h.stop();
  });

  it('one job per page of candidates; an account held elsewhere is queued again and evaluated', async () => {
    const ids = Array.from({ length: 120 }, (_, i) => `page${String(i).padStart(3, '0')}`);
    // Seeded as the billing system would, in one transaction each: the NOTIFYs evaluate them too,
    // so the scan below is what this test looks at, after those settle.
    for (const id of ids) await seed(h.t, id, 'overdue');
    await waitFor(
      async () => {
        const [row] = await h.t.raw<{ n: string }[]>`
          select count(*) as n from accounts where enforcement_state = 'suspended'`;
        return Number(row?.n) === ids.length;
      },
      60_000,
      'the seeded accounts suspended',
    );
    await h.t.raw`update accounts set evaluated_at = null`;

    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = h.t.raw.begin(async (tx) => {
      await tx`select id from accounts where id = 'page007' for update`;
      locked();
      await held;
    });
    await isLocked;
    const evaluate = h.daemon.ctx.queues.byName.evaluate;
    const before = await evaluate.getJobCounts('completed');
    const scanAddedAt = Date.now();
    await h.daemon.ctx.queues.add('balance-scan', { origin: 'operator:test' });
    try {
      await waitFor(
        async () => {
          const [row] = await h.t.raw<{ n: string }[]>`
            select count(*) as n from accounts where evaluated_at is not null`;
          return Number(row?.n) === ids.length - 1;
        },
        60_000,
        'every account but the held one evaluated',
      );
    } finally {
      release();
      await holder;
    }
    await waitFor(
      async () => {
        const [row] = await h.t.raw<{ evaluated_at: Date | null }[]>`
          select evaluated_at from accounts where id = 'page007'`;
        return row?.evaluated_at !== null;
      },
      30_000,
      'the held account evaluated once released',
    );
    const batches = (await evaluate.getJobs(['completed'], 0, 1_000)).filter((j) => {
      const data = j.data as { origin?: string };
      return j.name === 'evaluate-batch' && data.origin === 'scan' && j.timestamp >= scanAddedAt;
    });
    // 120 candidates in pages of 50: three jobs, the held account re-queued on its own.
    expect(
      batches.map((j) => (j.data as { accountIds: string[] }).accountIds.length).sort(),
    ).toEqual([20, 50, 50]);
    // The held account is re-queued. Others may be too: an effect or a message being recorded
    // for an account of the seeding above also holds its row for a moment, and a page skips it.
    const requeued = batches.flatMap(
      (j) => (j.returnvalue as { requeuedIds?: string[] }).requeuedIds ?? [],
    );
    expect(requeued).toContain('page007');
    expect(
      batches.reduce(
        (n, j) => n + Number((j.returnvalue as { requeued?: number }).requeued ?? 0),
        0,
      ),
    ).toBe(requeued.length);
    expect((await evaluate.getJobCounts('completed')).completed).toBeGreaterThan(
      before.completed ?? 0,
    );
    // Each account's suspension effects exist once.
    const [dups] = await h.t.raw<{ n: string }[]>`
      select count(*) as n from (select idempotency_key from outbox
                                  group by idempotency_key having count(*) > 1) d`;
    expect(Number(dups?.n)).toBe(0);
  });
});
