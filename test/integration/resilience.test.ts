import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCHEDULER_IDS } from '../../src/daemon';
import { deleteKeys, startHarness, waitFor, type Harness } from '../support/daemon';

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

describe('two daemons on the same Redis and PostgreSQL', () => {
  it('never double an effect', async () => {
    const second = await h.start();
    try {
      await Promise.all([h.daemon.ensureSchedulers(), second.ensureSchedulers()]);
      const schedulers = await h.daemon.ctx.queues.byName.scan.getJobSchedulers();
      expect(schedulers.map((s) => s.key).sort()).toEqual(['balance-scan', 'plan-scan']);
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
      await waitFor(
        async () => JSON.stringify(await statuses()) === JSON.stringify([['done', ids.length]]),
        10_000,
        'every outbox row done',
      );
      expect(await statuses()).toEqual([['done', ids.length]]);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      h.daemon = await h.start();
    }
  }, 120_000);
});
