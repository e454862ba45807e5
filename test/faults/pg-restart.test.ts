import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { describeFault, envInt, report, seedOverdue, sleep, until } from './harness';

/**
 * Scenario 3: the private PostgreSQL is stopped (immediate: every connection cut, like a crash)
 * in the middle of a run and started again 3 s later. The daemons are not restarted: their pools
 * reconnect, the LISTEN connection listens again and triggers a catch-up scan. The periodic scan
 * is set to an hour, so accounts written right after the restart are found only through the
 * re-listen (NOTIFY) or the catch-up scan. FAULTS_PG_ACCOUNTS (default 400).
 */

const ACCOUNTS = envInt('FAULTS_PG_ACCOUNTS', 400);

describeFault(
  {
    title: `PostgreSQL restarted mid-run (${ACCOUNTS} accounts)`,
    test: 'recovers without a daemon restart',
    env: { STUDIO_RELEASE_DELAY: '20s', STUDIO_RELEASE_WARNING: '5s', SCAN_INTERVAL: '1h' },
  },
  async (w, infra) => {
    const ids = await seedOverdue(w.raw, { prefix: 'p', count: ACCOUNTS, studioEvery: 5 });
    const started = Date.now();
    const daemons = [w.spawn(), w.spawn()];
    const done = async () => (await w.progress())['outbox.done'] ?? 0;
    await until(async () => (await done()) > ACCOUNTS / 4, 120_000, 'a quarter of the work done');
    const restartAt = Date.now();
    await infra.pg.restart(3_000);
    const backAt = Date.now();
    // Written at once after the restart: found by NOTIFY if the listener is back, else by the
    // catch-up scan the re-listen triggers (the periodic scan is an hour away).
    const late = await seedOverdue(w.raw, { prefix: 'late', count: 20 });
    const all = ids.length + late.length;
    const studios = ids.filter((_, i) => (i + 1) % 5 === 0).length;
    await w.settle(240_000, async () => {
      const [row] = await w.raw<{ held: string; released: string }[]>`
        select (select count(*) from services where kind = 'streaming' and overdue_hold) as held,
               (select count(*) from studio_instances where released_at is not null) as released`;
      return Number(row?.held) === all && Number(row?.released) === studios;
    });
    const lateHeld = await w.raw<{ at: Date }[]>`
      select max(suspended_at) as at from services where account_id like 'late-%'`;
    // One more NOTIFY after recovery: reaction in seconds again.
    const probeAt = Date.now();
    await seedOverdue(w.raw, { prefix: 'probe', count: 1 });
    await until(
      () => w.cp.calls.some((c) => c.accountId === 'probe-1'),
      20_000,
      'probe suspended',
      50,
    );
    const probeMs = Date.now() - probeAt;
    await sleep(1_000);
    const inv = await w.check();
    const log = readFileSync(w.logFile(), 'utf8');
    const relistens = log
      .split('\n')
      .filter((l) => l.includes('database listener reconnected')).length;
    const alive = daemons.every((d) => d.child.exitCode === null && d.child.signalCode === null);
    report('pg-restart', {
      accounts: ACCOUNTS,
      late: late.length,
      pgDownMs: backAt - restartAt,
      lateAllSuspendedAfterRestartMs: (lateHeld[0]?.at?.getTime() ?? 0) - backAt,
      probeReactionMs: probeMs,
      listenerReconnectLogs: relistens,
      daemonsAlive: alive,
      totalMs: Date.now() - started,
      ...inv,
    });
    expect(alive).toBe(true);
    expect(relistens).toBeGreaterThanOrEqual(daemons.length);
    expect(inv.problems).toEqual([]);
    expect(inv.failedNotifications).toBe(0);
    expect(probeMs).toBeLessThan(10_000);
  },
);
