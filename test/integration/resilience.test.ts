import { spawn, type ChildProcess } from 'node:child_process';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCHEDULER_IDS } from '../../src/daemon';
import { jobRegistry } from '../../src/observability/metrics';
import { createTestDatabase } from '../support/db';
import { deleteKeys, startHarness, TEST_REDIS_URL, waitFor, type Harness } from '../support/daemon';

/**
 * What production does to a daemon: Redis losing its data, a second daemon on the same stores,
 * a worker killed with SIGKILL in the middle of a batch. Real PostgreSQL, Redis and a
 * control-plane webhook on loopback; the killed daemon is a real child process.
 */

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ STUDIO_RELEASE_DELAY: '4s', STUDIO_RELEASE_WARNING: '1s' });
});

afterAll(async () => {
  await h?.stop();
});

async function overdueAccounts(prefix: string, count: number, studio = false): Promise<string[]> {
  const sql = h.t.raw;
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  await sql.begin(async (tx) => {
    for (const id of ids) {
      await tx`insert into accounts (id, currency, email) values (${id}, 'USD', ${`${id}@example.com`})`;
      await tx`insert into services (id, account_id, kind) values (${`${id}-s`}, ${id}, 'streaming')`;
      if (studio) {
        await tx`insert into services (id, account_id, kind, plan_type)
                 values (${`${id}-studio`}, ${id}, 'studio', 'duration')`;
        await tx`insert into studio_instances (id, account_id, service_id, name)
                 values (${`${id}-inst`}, ${id}, ${`${id}-studio`}, 'Stage')`;
      }
    }
  });
  await sql.begin(async (tx) => {
    for (const id of ids) {
      await tx`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
               values (${`${id}-b`}, ${id}, 'live', 999999, now() - interval '2 days', now() - interval '1 hour')`;
    }
  });
  return ids;
}

describe('Redis data loss', () => {
  it('schedulers are re-created and a pending release is rebuilt from PostgreSQL', async () => {
    const [id] = await overdueAccounts('flush', 1, true);
    await waitFor(
      () => h.cp.calls.some((c) => c.serviceId === `${id}-studio` && c.op === 'suspend'),
      5_000,
      'studio suspended',
    );
    const [inst] = await h.t.raw<{ release_due_at: Date }[]>`
      select release_due_at from studio_instances where id = ${`${id}-inst`}`;
    // Everything this daemon had in Redis is gone (FLUSHALL of its keys).
    await deleteKeys(h.redis, h.prefix);
    expect(
      await h.daemon.ctx.queues.byName.scan.getJobScheduler(SCHEDULER_IDS.balance),
    ).toBeFalsy();
    await waitFor(
      () => h.daemon.ctx.queues.byName.scan.getJobScheduler(SCHEDULER_IDS.balance),
      8_000,
      'scheduler re-created',
    );
    const release = await waitFor(
      () => h.cp.calls.find((c) => c.op === 'release' && c.instanceId === `${id}-inst`),
      10_000,
      'release after data loss',
    );
    expect(release.at - (inst?.release_due_at.getTime() ?? 0)).toBeLessThan(5_000);
    expect(
      h.cp.calls.filter((c) => c.op === 'release' && c.instanceId === `${id}-inst`),
    ).toHaveLength(1);
  });
});

describe('a database recreated under the same QUEUE_PREFIX, Redis kept', () => {
  it("delays no effect: the old database's finished jobs under the same keys are replaced at dispatch", async () => {
    const id = 'reborn-1';
    const serviceIds = [`${id}-streaming`, `${id}-recording`];
    const overdue = async (sql: typeof h.t.raw) => {
      await sql`insert into accounts (id, currency) values (${id}, 'USD')`;
      for (const serviceId of serviceIds) {
        const kind = serviceId.slice(id.length + 1);
        await sql`insert into services (id, account_id, kind) values (${serviceId}, ${id}, ${kind})`;
      }
      await sql`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
                values (${`${id}-b`}, ${id}, 'live', 999999, now() - interval '2 days',
                        now() - interval '1 hour')`;
    };
    const effects = (sql: typeof h.t.raw) =>
      sql<{ idempotency_key: string; status: string }[]>`
        select idempotency_key, status from outbox
         where account_id = ${id} and kind = 'control-plane' order by idempotency_key`;

    // Effect jobs leave Redis when they complete; the metrics still count them.
    const finished = async (state: string) =>
      (await jobRegistry.getSingleMetric('overdue_jobs_finished_total')?.get())?.values.find(
        (v) => v.labels.queue === 'effects' && v.labels.state === state,
      )?.value ?? 0;
    const completedBefore = await finished('completed');
    const failedBefore = await finished('failed');

    // The first database: one suspension applied (its job completed), the other refused by the
    // control plane (its job failed for good, and failed jobs stay in Redis for operators).
    h.cp.script = [400];
    await overdue(h.t.raw);
    const first = await waitFor(
      async () => {
        const rows = await effects(h.t.raw);
        return rows.length === 2 && rows.every((r) => r.status === 'done' || r.status === 'failed')
          ? rows
          : null;
      },
      15_000,
      'both suspensions settled in the first database',
    );
    expect(first.map((r) => r.status).sort()).toEqual(['done', 'failed']);
    await h.daemon.close();

    // A new database under the same prefix (a restored backup, a reset test database); the
    // scans run hourly here, so only the event path can act within the test's seconds.
    const t2 = await createTestDatabase();
    const second = await h.start({
      config: { ...h.config, databaseUrl: t2.url },
      database: t2.handle,
    });
    try {
      const since = Date.now();
      await overdue(t2.raw);
      const rows = await waitFor(
        async () => {
          const rows = await effects(t2.raw);
          return rows.length === 2 && rows.every((r) => r.status === 'done') ? rows : null;
        },
        15_000,
        'both suspensions done in the new database',
      );
      expect(rows.map((r) => r.idempotency_key)).toEqual(first.map((r) => r.idempotency_key));
      const calls = h.cp.requests.filter((c) => c.accountId === id && c.at >= since);
      expect(calls.map((c) => c.serviceId).sort()).toEqual([...serviceIds].sort());
      expect(calls.every((c) => c.op === 'suspend')).toBe(true);
      const [account] = await t2.raw<{ enforcement_state: string }[]>`
        select enforcement_state from accounts where id = ${id}`;
      expect(account?.enforcement_state).toBe('suspended');
      // A job completes (counted, and removed from Redis) just after its handler recorded the
      // outcome the rows above show.
      await waitFor(
        async () => (await finished('completed')) >= completedBefore + 3,
        10_000,
        'three effect jobs completed',
      );
      expect(await finished('failed')).toBeGreaterThanOrEqual(failedBefore + 1);
      await waitFor(
        async () =>
          (await second.ctx.queues.byName.effects.getJob(rows[0]?.idempotency_key ?? '')) ===
          undefined,
        10_000,
        'the completed job removed from Redis',
      );
    } finally {
      await second.close();
      await t2.drop();
      h.daemon = await h.start();
    }
  });
});

describe('reconcile: a dispatched row whose job failed for good', () => {
  it('an effect is settled failed with the reason; a timer is run again', async () => {
    await h.daemon.close();
    // No workers: the jobs below are failed by this test's own worker, as a handler whose
    // settle never landed (the database away at that moment) would leave them.
    const producer = await h.start({ workers: false });
    const id = 'failed-job-1';
    const effectKey = `suspend-svc-v1-${id}-s-e1`;
    const timerKey = `wake-v1-${id}-1`;
    const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const workers: Worker[] = [];
    try {
      await h.t.raw`insert into accounts (id, currency) values (${id}, 'USD')`;
      await h.t.raw`
        insert into outbox (idempotency_key, kind, account_id, payload, status, attempts)
        values (${effectKey}, 'control-plane', ${id},
                ${h.t.raw.json({ op: 'suspend', serviceId: `${id}-s`, episodeSeq: 1 })},
                'dispatched', 1),
               (${timerKey}, 'wake', ${id}, ${h.t.raw.json({ at: 1 })}, 'dispatched', 1)`;
      const queues = producer.ctx.queues;
      await queues.add(
        'control-plane',
        { outboxKey: effectKey },
        { jobId: effectKey, attempts: 1 },
      );
      await queues.add(
        'evaluate-account',
        { accountId: id, origin: 'timer', outboxKey: timerKey },
        { jobId: timerKey, attempts: 1 },
      );
      for (const name of ['effects', 'evaluate']) {
        const worker = new Worker(
          name,
          (): Promise<unknown> => Promise.reject(new UnrecoverableError('database unreachable')),
          { connection, prefix: h.prefix },
        );
        workers.push(worker);
      }
      await waitFor(
        async () =>
          (await queues.byName.effects.getJobState(effectKey)) === 'failed' &&
          (await queues.byName.evaluate.getJobState(timerKey)) === 'failed',
        5_000,
        'both jobs failed',
      );
      await Promise.all(workers.map((w) => w.close()));

      expect(await producer.ctx.relay.reconcile()).toBe(1);
      const rows = await h.t.raw<{ idempotency_key: string; status: string; last_error: string }[]>`
        select idempotency_key, status, last_error from outbox where account_id = ${id}
         order by idempotency_key`;
      expect(rows).toEqual([
        {
          idempotency_key: effectKey,
          status: 'failed',
          last_error: 'job failed: database unreachable',
        },
        { idempotency_key: timerKey, status: 'dispatched', last_error: null },
      ]);
      expect(await queues.byName.evaluate.getJobState(timerKey)).toBe('waiting');
    } finally {
      await Promise.all(workers.map((w) => w.close()));
      connection.disconnect();
      await producer.close();
      h.daemon = await h.start();
    }
  });
});

describe('two daemons on the same Redis and PostgreSQL', () => {
  it('never double an effect', async () => {
    const second = await h.start();
    try {
      await Promise.all([h.daemon.ensureSchedulers(), second.ensureSchedulers()]);
      const schedulers = await h.daemon.ctx.queues.byName.scan.getJobSchedulers();
      expect(schedulers.map((s) => s.key).sort()).toEqual(['balance-scan', 'plan-scan', 'prune']);
      const ids = await overdueAccounts('twin', 60);
      // Both daemons also scan at once: overlapping scans collapse per account.
      await Promise.all([
        h.daemon.ctx.queues.add('balance-scan', { origin: 'test' }),
        second.ctx.queues.add('balance-scan', { origin: 'test' }),
      ]);
      const mine = () => h.cp.calls.filter((c) => c.accountId.startsWith('twin-'));
      await waitFor(() => mine().length === ids.length, 15_000, 'every account suspended');
      await new Promise((r) => setTimeout(r, 1_000));
      expect(mine()).toHaveLength(ids.length);
      expect(h.cp.requests.filter((c) => c.accountId.startsWith('twin-'))).toHaveLength(ids.length);
      const [events] = await h.t.raw<{ n: string }[]>`
        select count(*) as n from enforcement_events
         where account_id like 'twin-%' and kind = 'service-suspended'`;
      expect(Number(events?.n)).toBe(ids.length);
    } finally {
      await second.close();
    }
  });
});

describe('a worker killed with SIGKILL mid-batch', () => {
  function spawnDaemon(): ChildProcess {
    return spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: {
        ...process.env,
        DATABASE_URL: h.t.url,
        QUEUE_PREFIX: h.prefix,
        CONTROL_PLANE_URL: h.cp.url,
        CONTROL_PLANE_SECRET: h.cp.secret,
        LOG_LEVEL: 'silent',
        SCAN_INTERVAL: '1h',
        EVALUATE_CONCURRENCY: '8',
        PORT: '0',
        // 400 suspensions at once, on purpose: more than the breaker's default admits.
        SUSPENSION_BREAKER: 'off',
      },
      stdio: 'ignore',
    });
  }

  it('loses no effect and repeats none after a restart', async () => {
    // Only the child processes work this batch.
    await h.daemon.close();
    const ids = await overdueAccounts('kill', 400);
    const mine = () => h.cp.calls.filter((c) => c.accountId.startsWith('kill-'));
    // The child's start-up scan finds the batch (the NOTIFYs went out while no daemon listened).
    let child = spawnDaemon();
    await waitFor(() => mine().length >= 20, 30_000, 'the batch under way');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const before = mine().length;
    expect(before).toBeLessThan(ids.length);
    child = spawnDaemon();
    try {
      // Jobs the killed worker held are retried once BullMQ finds them stalled (~20 s).
      await waitFor(() => mine().length === ids.length, 90_000, 'every account suspended once');
      await new Promise((r) => setTimeout(r, 1_000));
      // Exactly once per effect at the control plane (a call cut by the kill may be repeated with
      // the same idempotency key; the control plane counts it once).
      expect(new Set(mine().map((c) => c.idempotencyKey)).size).toBe(ids.length);
      expect(mine()).toHaveLength(ids.length);
      const statuses = async () =>
        (
          await h.t.raw<{ status: string; n: string }[]>`
            select status, count(*) as n from outbox
             where account_id like 'kill-%' and kind = 'control-plane' group by status`
        ).map((r) => [r.status, Number(r.n)]);
      // The effects the killed worker had claimed (up to EFFECTS_CONCURRENCY of them, their calls
      // made) are recorded by the new worker once their lease has run out: CONTROL_PLANE_TIMEOUT
      // + 15 s after the claim, then its job's retry.
      await waitFor(
        async () => JSON.stringify(await statuses()) === JSON.stringify([['done', ids.length]]),
        45_000,
        'every outbox row done',
      );
      expect(await statuses()).toEqual([['done', ids.length]]);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      h.daemon = await h.start();
    }
  }, 160_000);
});
