/**
 * Benchmark part (run.ts): does evaluating a scan's fan-out get faster with two daemon processes
 * than with one? For 1 and then 2 daemons, on a fresh copy of the same generated database
 * (CREATE DATABASE … TEMPLATE) and a fresh queue prefix:
 *
 * 1. the evaluate queue is paused before any daemon starts;
 * 2. the daemons start; each runs its start-up balance scan, which fans the candidates out into
 *    the paused queue (deduplicated per account, so both scans yield the same backlog);
 * 3. once every scan is done and the backlog is stable, the queue is resumed and the time until
 *    it is empty (at most BENCH_SCALE_WINDOW_S) gives evaluations/s.
 *
 * The ratio is evaluations/s with 2 over evaluations/s with 1. On a 2-core host shared by
 * PostgreSQL, Redis and the daemons, expect it near 1: it shows whether the work is CPU-bound.
 */
import { loadavg } from 'node:os';
import { Queue, type JobType } from 'bullmq';
import { startFakeControlPlane } from '../support/control-plane-server';
import { deleteKeys } from '../support/daemon';
import type { ScaleRun, ScalingResult } from './report';
import {
  cpuSeconds,
  log,
  round,
  waitUntil,
  watchQueues,
  type BenchContext,
  type BenchDb,
  type DaemonHandle,
} from './common';

const isScanResult = (r: unknown) => typeof r === 'object' && r !== null && 'candidates' in r;

async function jobCount(queue: Queue, ...states: JobType[]): Promise<number> {
  const counts = await queue.getJobCounts(...states);
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

export async function scalingPhase(
  ctx: BenchContext,
  template: BenchDb,
  accounts: number,
  windowSeconds: number,
): Promise<ScalingResult> {
  const runs: ScaleRun[] = [];
  for (const daemons of [1, 2]) {
    runs.push(await scaleRun(ctx, template, daemons, windowSeconds));
    log(`scaling: ${JSON.stringify(runs[runs.length - 1])}`);
  }
  const [one, two] = runs;
  return {
    accounts,
    windowSeconds,
    runs,
    ratio: round((two?.perSecond ?? Number.NaN) / (one?.perSecond ?? Number.NaN), 3),
  };
}

async function scaleRun(
  ctx: BenchContext,
  template: BenchDb,
  k: number,
  windowSeconds: number,
): Promise<ScaleRun> {
  const part = `scale${k}`;
  const db = await ctx.createDatabase(part, template);
  const prefix = ctx.prefix(part);
  const cp = await startFakeControlPlane();
  const evaluate = new Queue('evaluate', { connection: ctx.redis, prefix });
  const scan = new Queue('scan', { connection: ctx.redis, prefix });
  const watch = await watchQueues(prefix, ['evaluate', 'scan'], { keepReturnValues: ['scan'] });
  const daemons: DaemonHandle[] = [];
  const checkAlive = () => {
    if (daemons.some((d) => d.exited()))
      throw new Error(`scaling: a daemon exited early (see bench-results/daemon-${part}-*.log)`);
  };
  try {
    await evaluate.pause();
    for (let i = 1; i <= k; i += 1) {
      daemons.push(ctx.startDaemon({ url: db.url, prefix, cp, label: `${part}-${i}` }));
    }
    log(`scaling: ${k} daemon(s) started (pids ${daemons.map((d) => d.pid).join(', ')})`);
    let backlog = -1;
    let stable = 0;
    await waitUntil(
      `${k} daemon start-up scan(s)`,
      async () => {
        checkAlive();
        const scans = watch.stats.get('scan')?.returnValues.filter(isScanResult).length ?? 0;
        if (scans < k) return false;
        if ((await jobCount(scan, 'waiting', 'active', 'prioritized')) > 0) return false;
        const now = await jobCount(evaluate, 'waiting', 'prioritized');
        stable = now === backlog ? stable + 1 : 0;
        backlog = now;
        return stable >= 2;
      },
      600_000,
      250,
    );
    // The backlog in accounts: a scan's page job (evaluate-batch) holds up to
    // EVALUATE_BATCH_SIZE of them.
    backlog = (await evaluate.getJobs(['waiting', 'prioritized'], 0, -1)).reduce((sum, job) => {
      const ids = (job.data as { accountIds?: unknown }).accountIds;
      return sum + (Array.isArray(ids) ? ids.length : 1);
    }, 0);
    const workers = await evaluate.getWorkersCount().catch(() => Number.NaN);
    log(`scaling: ${k} daemon(s), backlog ${backlog}, evaluate workers seen ${workers}; resuming`);
    const stat = watch.stats.get('evaluate')!;
    const completedBefore = stat.completed;
    const failedBefore = stat.failed;
    const cpuBefore = daemons.reduce((a, d) => a + cpuSeconds(d.pid), 0);
    const t0 = Date.now();
    await evaluate.resume();
    const until = t0 + windowSeconds * 1000;
    let drained = false;
    await waitUntil(
      `${k} daemon(s) to evaluate the backlog`,
      async () => {
        checkAlive();
        if (Date.now() > until) return true;
        drained = (await jobCount(evaluate, 'waiting', 'prioritized', 'active')) === 0;
        return drained;
      },
      windowSeconds * 1000 + 60_000,
      100,
    );
    const end = drained && stat.last > t0 ? stat.last : Date.now();
    const completed = stat.completed - completedBefore;
    const seconds = (end - t0) / 1000;
    return {
      daemons: k,
      backlog,
      completed,
      failed: stat.failed - failedBefore,
      seconds: round(seconds, 2),
      perSecond: round(completed / seconds),
      drained,
      daemonCpuSeconds: round(daemons.reduce((a, d) => a + cpuSeconds(d.pid), 0) - cpuBefore, 1),
      loadAverage1m: round(loadavg()[0] ?? Number.NaN, 2),
    };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await watch.close();
    await evaluate.close().catch(() => undefined);
    await scan.close().catch(() => undefined);
    await cp.close().catch(() => undefined);
    await deleteKeys(ctx.redis, prefix).catch(() => undefined);
    await db.drop();
  }
}
