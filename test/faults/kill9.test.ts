import { expect } from 'vitest';
import {
  describeFault,
  envInt,
  payInFull,
  randomInt,
  report,
  seedHealthy,
  seedOverdue,
  sleep,
  type DaemonProcess,
  until,
} from './harness';

/**
 * Scenario 1: `kill -9` of the worker at random moments while a scan of many accounts fans out
 * evaluations, suspensions, studio releases and notifications; a new worker each time.
 * Sizes: FAULTS_ACCOUNTS (accounts the scan reads, default 2,000; the full size is
 * 20,000), FAULTS_OVERDUE_EVERY (every n-th of them is overdue and gets effects, the others are in
 * good standing; default 1 = all), FAULTS_KILLS (default 10; full 50), FAULTS_KILL_MIN_MS /
 * FAULTS_KILL_MAX_MS (each worker is killed this long after it is seen making progress, default
 * 0-3 s). Full size as run for the issue:
 *   FAULTS_ACCOUNTS=20000 FAULTS_OVERDUE_EVERY=4 FAULTS_KILLS=50 npm run test:faults -- kill9
 */

const ALL = envInt('FAULTS_ACCOUNTS', 2_000);
const OVERDUE_EVERY = Math.max(1, envInt('FAULTS_OVERDUE_EVERY', 1));
const ACCOUNTS = Math.ceil(ALL / OVERDUE_EVERY);
const KILLS = envInt('FAULTS_KILLS', 10);
const KILL_MIN_MS = envInt('FAULTS_KILL_MIN_MS', 0);
const KILL_MAX_MS = envInt('FAULTS_KILL_MAX_MS', 3_000);

describeFault(
  {
    title: `kill -9 during a scan (${ALL} accounts, ${ACCOUNTS} overdue, ${KILLS} kills)`,
    test: 'applies every effect and sends every message exactly once',
    env: {
      STUDIO_RELEASE_DELAY: '20s',
      STUDIO_RELEASE_WARNING: '5s',
      SCAN_INTERVAL: '5s',
      SCAN_PAGE_SIZE: '500',
    },
  },
  async (w) => {
    const ids = await seedOverdue(w.raw, { prefix: 'k', count: ACCOUNTS, studioEvery: 10 });
    if (ALL > ACCOUNTS) await seedHealthy(w.raw, 'h', ALL - ACCOUNTS);
    // Some accounts pay while the kills go on: resumes and their notices are in flight too.
    const payers = ids.filter((_, i) => i % 20 === 7);
    const started = Date.now();
    let daemon: DaemonProcess = w.spawn();
    const done = async () => (await w.progress())['outbox.done'] ?? 0;
    const atKill: string[] = [];
    for (let k = 1; k <= KILLS; k += 1) {
      // Each worker is killed at a random moment once it is doing work (it made progress), so
      // every kill lands mid-flight rather than during start-up.
      const before = await done();
      await until(async () => (await done()) > before, 120_000, `worker ${k} making progress`);
      await sleep(randomInt(KILL_MIN_MS, KILL_MAX_MS));
      if (k === Math.ceil(KILLS / 2)) {
        for (const id of payers) await payInFull(w.raw, id);
      }
      await daemon.kill9();
      const p = await w.progress();
      atKill.push(
        `${p['outbox.done'] ?? 0}/${Object.values(p).reduce((a, b) => a + b, 0)} smtp ${w.smtp.accepted()}`,
      );
      daemon = w.spawn();
    }
    const killsDone = Date.now();
    const unpaid = ACCOUNTS - payers.length;
    const studios = ids.filter((_, i) => (i + 1) % 10 === 0 && i % 20 !== 7).length;
    await w.settle(Math.max(300_000, ACCOUNTS * 60), () => w.enforcementIs(unpaid, studios));
    const settled = Date.now();
    const inv = await w.check();
    const suspends = w.cp.calls.filter((c) => c.op === 'suspend' && c.serviceId.endsWith('-s'));
    const releases = w.cp.calls.filter((c) => c.op === 'release');
    report('kill9', {
      accounts: ALL,
      overdue: ACCOUNTS,
      kills: KILLS,
      payers: payers.length,
      studios,
      killPhaseMs: killsDone - started,
      totalMs: settled - started,
      outboxDoneAtEachKill: atKill,
      streamingSuspends: suspends.length,
      releases: releases.length,
      ...inv,
    });
    expect(inv.problems).toEqual([]);
    // Every unpaid account suspended once at the control plane, every studio released once.
    const unpaidIds = new Set(ids.filter((_, i) => i % 20 !== 7));
    const suspendedUnpaid = new Set(
      suspends.filter((c) => unpaidIds.has(c.accountId)).map((c) => c.accountId),
    );
    expect(suspendedUnpaid.size).toBe(unpaid);
    expect(releases).toHaveLength(studios);
    expect(inv.failedNotifications).toBe(0);
  },
);
