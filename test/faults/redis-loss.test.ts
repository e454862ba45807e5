import { expect } from 'vitest';
import { SCHEDULER_IDS } from '../../src/daemon';
import { describeFault, envInt, payInFull, report, seedOverdue, sleep, until } from './harness';

/**
 * Scenario 2: the private Redis loses everything twice in the middle of a run: FLUSHALL, then a
 * restart without persistence (down for 2 s). The daemons are not restarted. Expect the job
 * schedulers back, the pending studio releases rebuilt from PostgreSQL and carried out on time,
 * and every effect and message exactly once. FAULTS_REDIS_ACCOUNTS (default 400).
 */

const ACCOUNTS = envInt('FAULTS_REDIS_ACCOUNTS', 400);

describeFault(
  {
    title: `Redis FLUSHALL and restart mid-run (${ACCOUNTS} accounts)`,
    test: 'restores schedules and pending releases, loses and doubles nothing',
    env: { STUDIO_RELEASE_DELAY: '25s', STUDIO_RELEASE_WARNING: '5s', SCAN_INTERVAL: '5s' },
  },
  async (w, infra) => {
    const ids = await seedOverdue(w.raw, { prefix: 'x', count: ACCOUNTS, studioEvery: 5 });
    const payers = ids.filter((_, i) => i % 10 === 3);
    const started = Date.now();
    w.spawn();
    w.spawn();
    const scheduled = async () => {
      const scan = w.queue('scan');
      try {
        return (await scan.getJobSchedulers())
          .map((s) => s.key)
          .sort()
          .join(',');
      } finally {
        await scan.close();
      }
    };
    // Mid-run: some suspensions done, releases pending in Redis as delayed jobs.
    await until(
      async () =>
        Number(
          (
            await w.raw<{ n: string }[]>`
            select count(*) as n from studio_instances where release_due_at is not null`
          )[0]?.n,
        ) >=
        ACCOUNTS / 10,
      120_000,
      'releases scheduled',
    );
    const flushedAt = Date.now();
    await infra.redis.flushAll();
    await until(
      async () => (await scheduled()) === Object.values(SCHEDULER_IDS).sort().join(','),
      30_000,
      'schedulers back after FLUSHALL',
    );
    const schedulersBackAfterFlushMs = Date.now() - flushedAt;
    for (const id of payers) await payInFull(w.raw, id);
    await sleep(3_000);
    const restartedAt = Date.now();
    await infra.redis.restart(2_000);
    await until(
      async () => (await scheduled()) === Object.values(SCHEDULER_IDS).sort().join(','),
      60_000,
      'schedulers back after restart',
    );
    const schedulersBackAfterRestartMs = Date.now() - restartedAt;

    const unpaid = ACCOUNTS - payers.length;
    const studios = ids.filter((_, i) => (i + 1) % 5 === 0 && i % 10 !== 3).length;
    await w.settle(300_000, () => w.enforcementIs(unpaid, studios));
    const inv = await w.check();
    const due = new Map(
      (
        await w.raw<{ id: string; due: Date }[]>`
          select id, release_due_at as due from studio_instances where released_at is not null`
      ).map((r) => [r.id, r.due.getTime()]),
    );
    const lags = w.cp.calls
      .filter((c) => c.op === 'release')
      .map((c) => c.at - (due.get(c.instanceId ?? '') ?? c.at))
      .sort((a, b) => a - b);
    report('redis-loss', {
      accounts: ACCOUNTS,
      payers: payers.length,
      studios,
      schedulersBackAfterFlushMs,
      schedulersBackAfterRestartMs,
      releaseLagMs: { min: lags[0], p50: lags[Math.floor(lags.length / 2)], max: lags.at(-1) },
      totalMs: Date.now() - started,
      ...inv,
    });
    expect(inv.problems).toEqual([]);
    expect(lags).toHaveLength(studios);
    expect(inv.failedNotifications).toBe(0);
  },
);
