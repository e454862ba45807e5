import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  claimEffect,
  noteOutboxAttempt,
  releaseLease,
  settleOutbox,
} from '../../src/adapters/db/outbox-store';
import { queryRows } from '../../src/adapters/db/client';
import { buildHttpServer } from '../../src/http/server';
import { startFakeControlPlane, type FakeControlPlane } from '../support/control-plane-server';
import { startHarness, waitFor, type Harness } from '../support/daemon';

/**
 * The outbox lifecycle end to end (real PostgreSQL, Redis and a control plane on loopback):
 * timers that are cancelled or fail stay settled, control-plane effects run under a lease in
 * order per service, and operator holds go through the same effect path.
 */

const OPS = { user: 'ops', password: 'ops-password-123456' };
const asOps = {
  authorization: `Basic ${Buffer.from(`${OPS.user}:${OPS.password}`).toString('base64')}`,
};

/** Carries what a test saw out of a transaction it rolls back. */
class RolledBack extends Error {
  constructor(readonly seen: unknown) {
    super('rolled back on purpose');
  }
}

let h: Harness;
let app: FastifyInstance;

beforeAll(async () => {
  h = await startHarness({
    STUDIO_RELEASE_DELAY: '1h',
    STUDIO_RELEASE_WARNING: '30m',
    DASHBOARD_USER: OPS.user,
    DASHBOARD_PASSWORD: OPS.password,
  });
  app = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await h?.stop();
});

let seq = 0;
async function account(opts: { studio?: boolean; hold?: boolean } = {}): Promise<string> {
  seq += 1;
  const id = `ol-${seq}-${Math.random().toString(36).slice(2, 8)}`;
  await h.t.raw`
    insert into accounts (id, currency, available_balance_minor, time_zone)
    values (${id}, 'USD', 1000000, 'UTC')`;
  // A hold placed by an operator (evaluations keep it).
  await h.t.raw`insert into services (id, account_id, kind, status, operator_hold)
                values (${`${id}-streaming`}, ${id}, 'streaming',
                        ${opts.hold ? 'suspended' : 'active'}, ${opts.hold ?? false})`;
  if (opts.studio) {
    await h.t.raw`insert into services (id, account_id, kind, plan_type)
                  values (${`${id}-studio`}, ${id}, 'studio', 'duration')`;
    await h.t.raw`insert into studio_instances (id, account_id, service_id, name, streaming)
                  values (${`${id}-inst`}, ${id}, ${`${id}-studio`}, 'Main stage', true)`;
  }
  return id;
}

async function outboxRow(key: string) {
  const [row] = await h.t.raw<{ status: string; last_error: string | null; attempts: number }[]>`
    select status, last_error, attempts from outbox where idempotency_key = ${key}`;
  return row;
}

/** A dispatched control-plane row, as the relay leaves it; returns its key. */
async function effectRow(id: string, op: 'suspend' | 'resume', tag: string): Promise<string> {
  const key = `${op}-test-v1-${id}-${tag}`;
  await h.t.raw`
    insert into outbox (idempotency_key, kind, account_id, payload, status, attempts)
    values (${key}, 'control-plane', ${id},
            ${h.t.raw.json({ op, serviceId: `${id}-streaming`, episodeSeq: 1 })}, 'dispatched', 1)`;
  return key;
}

async function events(key: string) {
  return h.t.raw<{ kind: string }[]>`
    select kind from enforcement_events where detail ->> 'key' = ${key} order by id`;
}

describe('timers', () => {
  it('a cancelled release timer is never re-added by reconcile', async () => {
    const id = await account({ studio: true });
    const bill = `${id}-bill`;
    await h.t.raw`
      insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at, status)
      values (${bill}, ${id}, 'live', 10, 0, now() - interval '2 days', now() - interval '1 minute', 'unpaid')`;
    const timer = await waitFor(
      async () => {
        const [row] = await h.t.raw<{ idempotency_key: string; status: string }[]>`
          select idempotency_key, status from outbox
           where account_id = ${id} and kind = 'wake' and payload ->> 'at' is not null
             and idempotency_key like 'release-timer%'`;
        return row?.status === 'dispatched' ? row : undefined;
      },
      10_000,
      'release timer dispatched',
    );
    const evaluate = h.daemon.ctx.queues.byName.evaluate;
    expect(await evaluate.getJobState(timer.idempotency_key)).toBe('delayed');

    await h.t.raw`update bills set paid_minor = amount_minor, status = 'paid', updated_at = now()
                   where id = ${bill}`;
    const settled = await waitFor(
      async () => {
        const row = await outboxRow(timer.idempotency_key);
        return row?.status === 'superseded' ? row : undefined;
      },
      10_000,
      'timer row settled by its cancellation',
    );
    expect(settled.last_error).toMatch(/^cancelled by /);
    expect(await evaluate.getJobState(timer.idempotency_key)).toBe('unknown');

    await h.daemon.ctx.relay.reconcile();
    expect(await evaluate.getJobState(timer.idempotency_key)).toBe('unknown');
    expect((await outboxRow(timer.idempotency_key))?.status).toBe('superseded');
  });

  it('a timer job failed for good leaves a settled row', async () => {
    const id = await account();
    const key = `wake-v1-${id}-1`;
    await h.t.raw`
      insert into outbox (idempotency_key, kind, account_id, payload, status, attempts)
      values (${key}, 'wake', ${id}, ${h.t.raw.json({ at: 1 })}, 'dispatched', 1)`;
    // A payload no handler can parse: the registry's worker fails the job for good.
    await h.daemon.ctx.queues.byName.evaluate.add(
      'evaluate-account',
      { accountId: '', origin: 'timer', outboxKey: key },
      { jobId: key, attempts: 1 },
    );
    const row = await waitFor(
      async () => {
        const r = await outboxRow(key);
        return r?.status === 'failed' ? r : undefined;
      },
      10_000,
      'timer row failed',
    );
    expect(row.last_error).toMatch(/^job failed: /);
    await h.daemon.ctx.relay.reconcile();
    expect((await outboxRow(key))?.status).toBe('failed');
  });
});

describe('retention', () => {
  it('pruning deletes only what is old and finished, in batches, while the daemon runs', async () => {
    const id = await account();
    const old = "now() - interval '8 days'";
    const ancient = "now() - interval '401 days'";
    // 1,200 finished outbox rows past RETENTION_OUTBOX (7d), in three statuses.
    await h.t.raw.unsafe(`
      insert into outbox (idempotency_key, kind, account_id, status, created_at, updated_at)
      select 'old-' || g || '-${id}', 'wake', '${id}',
             (array['done', 'failed', 'superseded'])[1 + g % 3], ${old}, ${old}
        from generate_series(1, 1200) g`);
    // Old but unfinished, and finished but recent: kept.
    await h.t.raw.unsafe(`
      insert into outbox (idempotency_key, kind, account_id, status, created_at, updated_at)
      values ('keep-pending-${id}', 'wake', '${id}', 'pending', ${old}, ${old}),
             ('keep-dispatched-${id}', 'wake', '${id}', 'dispatched', ${old}, ${old}),
             ('keep-recent-${id}', 'wake', '${id}', 'done', now(), now())`);
    const message = (key: string, status: string, age: string) => `
      ('${key}-${id}', '${id}', 'email', 'suspended', 'en', 'x@example.com', '${status}', ${age}, ${age})`;
    await h.t.raw.unsafe(`
      insert into notifications (dedupe_key, account_id, channel, template, locale, recipient,
                                 status, created_at, updated_at)
      values ${message('n-old-delivered', 'delivered', "now() - interval '91 days'")},
             ${message('n-old-superseded', 'superseded', "now() - interval '91 days'")},
             ${message('n-old-pending', 'pending', "now() - interval '91 days'")},
             ${message('n-recent-failed', 'failed', 'now()')}`);
    await h.t.raw.unsafe(`
      insert into enforcement_events (account_id, kind, created_at)
      values ('${id}', 'old-event', ${ancient}), ('${id}', 'recent-event', now())`);
    await h.t.raw.unsafe(`
      insert into breaker_ledger (decision_key, account_id, kind, status, decided_at)
      values ('b-old-allowed-${id}', '${id}', 'suspend', 'allowed', ${ancient}),
             ('b-old-held-${id}', '${id}', 'suspend', 'held', ${ancient}),
             ('b-recent-${id}', '${id}', 'suspend', 'rejected', now())`);
    await h.t.raw.unsafe(`
      insert into sms_early_callbacks (provider_id, message_id, status, received_at)
      values ('twilio', 'SMold${id}', 'delivered', now() - interval '25 hours'),
             ('twilio', 'SMnew${id}', 'delivered', now())`);

    // The daemon keeps working meanwhile: an effect queued with the prune goes through.
    const effect = await effectRow(await account({ hold: true }), 'suspend', 'during-prune');
    const job = await h.daemon.ctx.queues.add('prune', { origin: 'test' });
    await h.daemon.ctx.queues.add('control-plane', { outboxKey: effect }, { jobId: effect });
    const result = await waitFor(
      async () => {
        const j = await h.daemon.ctx.queues.byName.scan.getJob(String(job.id));
        return (await j?.getState()) === 'completed'
          ? (j?.returnvalue as { outbox: number; batches: number })
          : undefined;
      },
      30_000,
      'prune finished',
    );
    expect(result.outbox).toBeGreaterThanOrEqual(1_200);
    expect(result.batches).toBeGreaterThanOrEqual(3);

    const outboxLeft = await h.t.raw<{ idempotency_key: string }[]>`
      select idempotency_key from outbox where account_id = ${id} order by idempotency_key`;
    expect(outboxLeft.map((r) => r.idempotency_key)).toEqual([
      `keep-dispatched-${id}`,
      `keep-pending-${id}`,
      `keep-recent-${id}`,
    ]);
    const messagesLeft = await h.t.raw<{ dedupe_key: string }[]>`
      select dedupe_key from notifications where account_id = ${id} order by dedupe_key`;
    expect(messagesLeft.map((r) => r.dedupe_key)).toEqual([
      `n-old-pending-${id}`,
      `n-recent-failed-${id}`,
    ]);
    const eventsLeft = await h.t.raw<{ kind: string }[]>`
      select kind from enforcement_events where account_id = ${id}`;
    expect(eventsLeft.map((e) => e.kind)).toEqual(['recent-event']);
    const ledgerLeft = await h.t.raw<{ decision_key: string }[]>`
      select decision_key from breaker_ledger where account_id = ${id} order by decision_key`;
    expect(ledgerLeft.map((r) => r.decision_key)).toEqual([`b-old-held-${id}`, `b-recent-${id}`]);
    const callbacksLeft = await h.t.raw<{ message_id: string }[]>`
      select message_id from sms_early_callbacks where message_id like ${`%${id}`}`;
    expect(callbacksLeft.map((c) => c.message_id)).toEqual([`SMnew${id}`]);

    await waitFor(async () => (await outboxRow(effect))?.status === 'done', 10_000, 'effect');
  });
});

describe('control-plane effects under a lease', () => {
  it('a control-plane call that outlives its lease is fenced (two holders, one recorded outcome)', async () => {
    const id = await account({ hold: true });
    const key = await effectRow(id, 'suspend', 'fence');
    const db = h.daemon.ctx.db;
    const expire = () => h.t.raw`update outbox set claim_expires_at = now() - interval '1 second'
                                   where idempotency_key = ${key}`;
    // Holder A claims, then stalls past its lease (a GC pause, a partition); B takes over.
    const a = await claimEffect(db, key, 'holder-a', 60_000);
    expect(a.kind).toBe('claimed');
    expect(await claimEffect(db, key, 'holder-b', 60_000)).toMatchObject({
      kind: 'busy',
      reason: 'held',
    });
    await expire();
    const b = await claimEffect(db, key, 'holder-b', 60_000);
    expect(b.kind).toBe('claimed');
    // A's late outcome, while B holds the row, is fenced off: nothing recorded, no event.
    const late = await settleOutbox(db, key, {
      status: 'failed',
      reason: 'late holder',
      claimToken: 'holder-a',
      event: { accountId: id, kind: 'effect-failed', detail: { key } },
    });
    expect(late).toBe(false);
    expect(await noteOutboxAttempt(db, key, 'late retry', 'holder-a')).toBe(false);
    expect(await outboxRow(key)).toMatchObject({ status: 'dispatched', attempts: 1 });
    expect(await events(key)).toEqual([]);

    // The daemon's job waits while B's lease is live...
    await h.daemon.ctx.queues.add('control-plane', { outboxKey: key }, { jobId: key });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(h.cp.requests.filter((c) => c.idempotencyKey === key)).toHaveLength(0);
    // ...and takes over once it has run out, calling once and recording once.
    await expire();
    await waitFor(
      async () => (await outboxRow(key))?.status === 'done',
      10_000,
      'effect recorded by the job',
    );
    expect(
      await settleOutbox(db, key, { status: 'failed', reason: 'x', claimToken: 'holder-b' }),
    ).toBe(false);
    expect(await outboxRow(key)).toMatchObject({ status: 'done', last_error: null });
    expect((await events(key)).map((e) => e.kind)).toEqual(['effect-applied']);
    expect(h.cp.requests.filter((c) => c.idempotencyKey === key)).toHaveLength(1);
  });

  it('a failed attempt on a row claimed while still pending (an operator ran it by hand) gives the lease back', async () => {
    const id = await account({ hold: true });
    const key = `suspend-test-v1-${id}-manual-pending`;
    // The whole story runs in one transaction that is rolled back: the harness's relay takes
    // every committed pending row at once (dispatching it), so a committed row would not stay
    // pending long enough to be claimed as one.
    const seen = await h.daemon.ctx.db
      .transaction(async (tx) => {
        await tx.execute(sql`
          insert into outbox (idempotency_key, kind, account_id, payload, status, attempts)
          values (${key}, 'control-plane', ${id},
                  ${JSON.stringify({ op: 'suspend', serviceId: `${id}-streaming`, episodeSeq: 1 })}::jsonb,
                  'pending', 0)`);
        const row = async () => {
          const [r] = await queryRows<{
            status: string;
            attempts: number;
            last_error: string | null;
          }>(
            tx,
            sql`select status, attempts, last_error from outbox where idempotency_key = ${key}`,
          );
          return r;
        };
        const first = (await claimEffect(tx, key, 'manual', 60_000)).kind;
        const noted = await noteOutboxAttempt(tx, key, 'control plane unavailable', 'manual');
        const after = await row();
        // The relay's job (or the retry) claims it at once, not after the lease would have run out.
        const next = (await claimEffect(tx, key, 'next', 60_000)).kind;
        throw new RolledBack({ first, noted, after, next });
      })
      .catch((err: unknown) => {
        if (err instanceof RolledBack) return err.seen;
        throw err;
      });
    expect(seen).toEqual({
      first: 'claimed',
      noted: true,
      after: { status: 'pending', attempts: 1, last_error: 'control plane unavailable' },
      next: 'claimed',
    });
    expect(await outboxRow(key)).toBeUndefined();
  });

  it('a resume queued behind its suspend waits for it', async () => {
    // Paid meanwhile: the suspend is no longer wanted, the resume is.
    const id = await account();
    const suspend = await effectRow(id, 'suspend', 'a');
    const resume = await effectRow(id, 'resume', 'b');
    const db = h.daemon.ctx.db;
    const held = await claimEffect(db, suspend, 'slow-holder', 60_000);
    expect(held.kind).toBe('claimed');
    const behind = await claimEffect(db, resume, 'eager', 60_000);
    expect(behind).toMatchObject({ kind: 'busy', reason: 'behind' });

    await h.daemon.ctx.queues.add('control-plane', { outboxKey: resume }, { jobId: resume });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(h.cp.requests.filter((c) => c.accountId === id)).toHaveLength(0);
    expect((await outboxRow(resume))?.status).toBe('dispatched');

    // The suspend's holder gives up its lease; its job settles it, then the resume goes.
    await releaseLease(db, suspend, 'slow-holder');
    await h.daemon.ctx.queues.add('control-plane', { outboxKey: suspend }, { jobId: suspend });
    await waitFor(
      async () => (await outboxRow(resume))?.status === 'done',
      10_000,
      'resume applied',
    );
    expect((await outboxRow(suspend))?.status).toBe('superseded');
    const [s, r] = await h.t.raw<{ kind: string; at: Date }[]>`
      select kind, created_at as at from enforcement_events
       where detail ->> 'key' in (${suspend}, ${resume}) order by id`;
    expect([s?.kind, r?.kind]).toEqual(['effect-superseded', 'effect-applied']);
    expect(h.cp.requests.filter((c) => c.accountId === id).map((c) => c.op)).toEqual(['resume']);
  });

  it('no transaction or row lock is held across the control-plane call', async () => {
    const id = await account({ hold: true });
    const key = await effectRow(id, 'suspend', 'nolock');
    const seen: string[] = [];
    h.cp.onCall = async (call) => {
      if (call.idempotencyKey !== key) return;
      // While the daemon waits for this answer, its service and outbox rows are free to lock.
      await h.t.raw.begin(async (tx) => {
        await tx`set local lock_timeout = '200ms'`;
        await tx`select id from services where id = ${`${id}-streaming`} for update nowait`;
        await tx`select id from outbox where idempotency_key = ${key} for update nowait`;
        seen.push('free');
      });
    };
    try {
      await h.daemon.ctx.queues.add('control-plane', { outboxKey: key }, { jobId: key });
      await waitFor(async () => (await outboxRow(key))?.status === 'done', 10_000, 'applied');
      expect(seen).toEqual(['free']);
    } finally {
      h.cp.onCall = null;
    }
  });

  it('the control plane down for 30 s while an operator suspends: 202, applied once when it is back', async () => {
    const id = await account();
    const port = Number(new URL(h.cp.url).port);
    await h.cp.close();
    let back: FakeControlPlane | null = null;
    try {
      const started = Date.now();
      const res = await app.inject({
        method: 'POST',
        url: `/v1/services/${id}-streaming/hold`,
        headers: asOps,
        payload: { confirmAccountId: id, reason: 'abuse report' },
      });
      expect(res.statusCode).toBe(202);
      expect(Date.now() - started).toBeLessThan(2_000);
      const effectKey = (JSON.parse(res.body) as { effectKey: string }).effectKey;
      expect(effectKey).toMatch(/^operator-suspend-v1-/);
      const [svc] = await h.t.raw<{ status: string; operator_hold: boolean }[]>`
        select status, operator_hold from services where id = ${`${id}-streaming`}`;
      expect(svc).toEqual({ status: 'suspended', operator_hold: true });

      await new Promise((r) => setTimeout(r, 30_000));
      const pending = await outboxRow(effectKey);
      expect(pending?.status).toBe('dispatched');
      expect(pending?.attempts).toBeGreaterThan(1);
      expect(pending?.last_error).toMatch(/fetch failed|ECONNREFUSED/);

      back = await startFakeControlPlane(h.cp.secret, port);
      await waitFor(
        async () => (await outboxRow(effectKey))?.status === 'done',
        60_000,
        'effect applied after the control plane is back',
      );
      await new Promise((r) => setTimeout(r, 1_000));
      expect(back.requests.filter((c) => c.idempotencyKey === effectKey)).toHaveLength(1);
      expect(back.calls[0]).toMatchObject({ op: 'suspend', headerKey: effectKey });
      const applied = await h.t.raw<{ kind: string; actor: string }[]>`
        select kind, actor from enforcement_events where detail ->> 'key' = ${effectKey}`;
      expect(applied).toEqual([{ kind: 'effect-applied', actor: 'operator:ops' }]);
    } finally {
      await back?.close();
    }
  }, 120_000);
});
