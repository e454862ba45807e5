import { expect } from 'vitest';
import {
  describeFault,
  envInt,
  payInFull,
  report,
  seedOverdue,
  sleep,
  type DaemonProcess,
  until,
} from './harness';

/**
 * Scenario 6: three daemons on the same stores; one of them is restarted (SIGTERM, graceful)
 * every few seconds, the others keep working. No effect or message may be doubled.
 * FAULTS_TRIO_ACCOUNTS (default 1,000), FAULTS_TRIO_RESTARTS (default 8).
 */

const ACCOUNTS = envInt('FAULTS_TRIO_ACCOUNTS', 1_000);
const RESTARTS = envInt('FAULTS_TRIO_RESTARTS', 8);

describeFault(
  {
    title: `three daemons, one restarted every few seconds (${ACCOUNTS} accounts)`,
    test: 'never doubles an effect',
    env: { STUDIO_RELEASE_DELAY: '15s', STUDIO_RELEASE_WARNING: '5s', SCAN_INTERVAL: '3s' },
  },
  async (w) => {
    const ids = await seedOverdue(w.raw, { prefix: 't', count: ACCOUNTS, studioEvery: 10 });
    const payers = ids.filter((_, i) => i % 25 === 4);
    const started = Date.now();
    w.spawn();
    w.spawn();
    let restarted: DaemonProcess = w.spawn();
    const exitCodes: (number | null)[] = [];
    const evaluate = w.queue('evaluate');
    for (let r = 1; r <= RESTARTS; r += 1) {
      // Restart a daemon that is up (its workers registered in Redis) and has worked a few
      // seconds: a SIGTERM while node is still loading modules is not a graceful shutdown.
      await until(
        async () => (await evaluate.getWorkers()).length >= 3,
        60_000,
        'three daemons up',
      );
      await sleep(3_000);
      if (r === Math.ceil(RESTARTS / 2)) for (const id of payers) await payInFull(w.raw, id);
      exitCodes.push(await restarted.stop(15_000));
      restarted = w.spawn();
    }
    await evaluate.close();
    const unpaid = ACCOUNTS - payers.length;
    const studios = ids.filter((_, i) => (i + 1) % 10 === 0 && i % 25 !== 4).length;
    await w.settle(300_000, () => w.enforcementIs(unpaid, studios));
    const inv = await w.check();
    report('three-daemons', {
      accounts: ACCOUNTS,
      restarts: RESTARTS,
      exitCodes,
      payers: payers.length,
      studios,
      totalMs: Date.now() - started,
      ...inv,
    });
    expect(inv.problems).toEqual([]);
    expect(inv.controlPlaneRepeats).toBe(0);
    expect(inv.smtpRedelivered).toBe(0);
    expect(inv.failedNotifications).toBe(0);
    expect(exitCodes.every((c) => c === 0)).toBe(true);
  },
);
