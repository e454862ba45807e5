/**
 * Benchmark part (run.ts): studio releases, on a database of their own with BENCH_RELEASES
 * accounts, each with a streaming service and a duration-plan studio with one instance, and a
 * daemon child whose STUDIO_RELEASE_DELAY is short (the time to schedule them all plus 30 s) and
 * STUDIO_RELEASE_WARNING 5 s. Three figures:
 *
 * - overdue → suspended: an overdue bill (beyond the protection quota) is inserted for each
 *   account, paced at BENCH_RELEASE_RATE/s (the billing system's write; its trigger NOTIFYs); per
 *   account, from the INSERT's commit to the last suspend call at the fake control plane.
 *   Baseline: the NOTIFY's arrival at a LISTEN in this process.
 * - Redis bytes per pending release: once every release is scheduled and its timers are delayed
 *   BullMQ jobs (and before the first of them fires), MEMORY USAGE of the evaluate queue's
 *   delayed jobs (the release timer and the warning wake) plus the growth of the delayed set, per
 *   release; and the growth of the whole prefix per release. Baseline: BENCH_RELEASES empty
 *   delayed jobs added to the same queue (due in an hour, removed again), bytes per job.
 * - release lag: the release call's arrival at the fake control plane minus the instance's
 *   release_due_at. Baseline: bare delayed BullMQ jobs with a no-op worker in this process.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';
import { startFakeControlPlane } from '../support/control-plane-server';
import { deleteKeys } from '../support/daemon';
import type { ReleaseResult, Summary } from './report';
import {
  CHANNEL,
  log,
  memoryUsage,
  prefixMemory,
  readMem,
  REDIS_URL,
  round,
  sleep,
  summary,
  waitUntil,
  watchQueues,
  type BenchContext,
  type DaemonHandle,
} from './common';

const WARNING_S = 5;

const pad = (i: number) => String(i).padStart(5, '0');

export async function releasePhase(
  ctx: BenchContext,
  o: { releases: number; ratePerSecond: number },
): Promise<ReleaseResult> {
  const R = o.releases;
  const delaySeconds = Math.ceil(R / o.ratePerSecond) + 30;
  const db = await ctx.createDatabase('release');
  const prefix = ctx.prefix('release');
  const { redis } = ctx;
  const delayedKey = `${prefix}:evaluate:delayed`;
  const jobKey = (id: string) => `${prefix}:evaluate:${id}`;

  const setup = await createDb(db.url, '/unused', { poolSize: 2 });
  await migrate(setup.db);
  await setup.close();
  const sql = postgres(db.url, { max: 10, onnotice: () => undefined });
  const listener = postgres(db.url, { max: 1, onnotice: () => undefined });
  const ids = Array.from({ length: R }, (_, i) => `rel-${pad(i + 1)}`);
  // Balance above the low-balance threshold: only the overdue bill makes them candidates.
  await sql`
    insert into accounts (id, currency, email, phone, available_balance_minor, time_zone)
    select 'rel-' || lpad(i::text, 5, '0'), 'USD', 'rel-' || i || '@example.com',
           '+1555' || lpad(i::text, 7, '0'), 1000000, 'UTC'
      from generate_series(1, ${R}) i`;
  await sql`
    insert into services (id, account_id, kind, plan_type)
    select id || v.suffix, id, v.kind, v.plan
      from accounts
     cross join (values ('-s', 'streaming', 'payg'), ('-studio', 'studio', 'duration'))
                v(suffix, kind, plan)`;
  await sql`
    insert into studio_instances (id, account_id, service_id, name)
    select id || '-inst', id, id || '-studio', 'Stage' from accounts`;
  const cp = await startFakeControlPlane();
  const notifyAt = new Map<string, number>();
  await listener.listen(CHANNEL, (payload) => {
    if (!notifyAt.has(payload)) notifyAt.set(payload, Date.now());
  });
  const watch = await watchQueues(prefix, ['scan'], { keepReturnValues: ['scan'] });
  const evaluate = new Queue('evaluate', { connection: redis, prefix });
  let daemon: DaemonHandle | null = null;
  try {
    // Baseline for the lag, while nothing else runs: bare delayed jobs, due over 2 s.
    const baselineTimerLagMs = await bareTimerLag(ctx, prefix, R);
    log(`release: bare delayed job lag ${JSON.stringify(baselineTimerLagMs)}`);

    daemon = ctx.startDaemon({
      url: db.url,
      prefix,
      cp,
      label: 'release',
      env: { STUDIO_RELEASE_DELAY: `${delaySeconds}s`, STUDIO_RELEASE_WARNING: `${WARNING_S}s` },
    });
    const d = daemon;
    const alive = () => {
      if (d.exited()) throw new Error(`release: the daemon exited early (see ${d.logFile})`);
    };
    await waitUntil(
      'release daemon start-up scan',
      async () => {
        alive();
        const scans = watch.stats.get('scan')?.returnValues.length ?? 0;
        const counts = await evaluate.getJobCounts('waiting', 'active', 'prioritized');
        return scans > 0 && Object.values(counts).every((c) => c === 0);
      },
      120_000,
      250,
    );

    // The same daemon command, idle (start-up done, nothing to do): a baseline for its RSS.
    await sleep(1_000);
    const daemonIdleRssMB = round((readMem(d.pid)?.rssKb ?? Number.NaN) / 1024);

    // Empty delayed jobs on the same queue: bytes per job, then removed.
    const zsetBefore = (await memoryUsage(redis, [delayedKey]))[0] ?? 0;
    const emptyIds = Array.from({ length: R }, (_, i) => `bench-empty-${i}`);
    await evaluate.addBulk(
      emptyIds.map((jobId) => ({
        name: 'bench-empty',
        data: {},
        opts: { jobId, delay: 3_600_000 },
      })),
    );
    const emptyJobs = (await memoryUsage(redis, emptyIds.map(jobKey))).reduce((a, b) => a + b, 0);
    const zsetWithEmpty = (await memoryUsage(redis, [delayedKey]))[0] ?? 0;
    const emptyDelayedJobBytes = (emptyJobs + zsetWithEmpty - zsetBefore) / R;
    for (const id of emptyIds) await evaluate.remove(id);
    await sleep(500);
    const before = await prefixMemory(redis, prefix);

    // Overdue bills, paced.
    log(`release: ${R} overdue bills at ${o.ratePerSecond}/s, release delay ${delaySeconds} s`);
    const billed = new Map<string, { t0: number; t1: number }>();
    const started = performance.now();
    const pending: Promise<void>[] = [];
    for (const [k, id] of ids.entries()) {
      const wait = started + (k * 1000) / o.ratePerSecond - performance.now();
      if (wait > 0) await sleep(wait);
      pending.push(
        (async () => {
          const t0 = Date.now();
          await sql`
            insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
            values (${`${id}-b`}, ${id}, 'live', 999999, now() - interval '2 days',
                    now() - interval '1 hour')`;
          billed.set(id, { t0, t1: Date.now() });
        })(),
      );
    }
    await Promise.all(pending);

    // Every release scheduled, its wake relayed and its timer a delayed job in Redis.
    await waitUntil(
      'releases scheduled and their timers in Redis',
      async () => {
        alive();
        const [row] = await sql<{ scheduled: string; relaying: string }[]>`
          select (select count(*) from studio_instances where release_due_at is not null)
                   as scheduled,
                 (select count(*) from outbox where kind = 'wake' and status = 'pending')
                   as relaying`;
        if (Number(row?.scheduled) < R || Number(row?.relaying) > 0) return false;
        const delayed = await redis.zrange(delayedKey, 0, -1);
        return delayed.filter((id) => id.startsWith('release-timer-')).length >= R;
      },
      delaySeconds * 1000,
      100,
    );
    const measuredAt = Date.now();
    const delayedIds = await redis.zrange(delayedKey, 0, -1);
    const delayedBytes = (await memoryUsage(redis, delayedIds.map(jobKey))).reduce(
      (a, b) => a + b,
      0,
    );
    const zsetAfter = (await memoryUsage(redis, [delayedKey]))[0] ?? 0;
    const after = await prefixMemory(redis, prefix);
    const [firstDue] = await sql<{ due: Date | null }[]>`
      select min(release_due_at) as due from studio_instances`;
    const delayedJobs: Record<string, number> = {};
    for (const id of delayedIds) {
      const kind = id.startsWith('release-timer-')
        ? 'release timers'
        : id.startsWith('wake-')
          ? 'wakes'
          : 'other';
      delayedJobs[kind] = (delayedJobs[kind] ?? 0) + 1;
    }
    const delayedJobBytes = delayedBytes + zsetAfter - zsetBefore;
    const memory: ReleaseResult['memory'] = {
      pendingReleases: R,
      beforeFirstTimer: measuredAt < (firstDue?.due?.getTime() ?? 0) - WARNING_S * 1000,
      delayedJobs,
      delayedJobBytes,
      bytesPerPendingRelease: round(delayedJobBytes / R),
      emptyDelayedJobBytes: round(emptyDelayedJobBytes),
      prefixBytesBefore: before.bytes,
      prefixBytesAfter: after.bytes,
      prefixBytesPerPendingRelease: round((after.bytes - before.bytes) / R),
      usedMemoryPerPendingRelease: round((after.usedMemory - before.usedMemory) / R),
    };
    log(`release: memory ${JSON.stringify(memory)}`);

    // The releases themselves.
    const [lastDue] = await sql<{ due: Date | null }[]>`
      select max(release_due_at) as due from studio_instances`;
    const releases = () => cp.calls.filter((c) => c.op === 'release');
    await waitUntil(
      'release calls',
      () => {
        alive();
        return Promise.resolve(releases().length >= R);
      },
      (lastDue?.due?.getTime() ?? Date.now()) - Date.now() + 120_000,
      100,
    ).catch((err: unknown) => log(String(err)));
    const dueOf = new Map(
      (
        await sql<{ id: string; due: Date }[]>`
          select id, release_due_at as due from studio_instances where release_due_at is not null`
      ).map((r) => [r.id, r.due.getTime()]),
    );
    const lags: number[] = [];
    for (const c of releases()) {
      const due = dueOf.get(c.instanceId ?? '');
      if (due !== undefined) lags.push(c.at - due);
    }
    const evalRows = await sql<{ id: string; at: Date }[]>`
      select detail->>'instanceId' as id, min(created_at) as at from enforcement_events
       where kind = 'studio-released' group by 1`;
    const evalLags: number[] = [];
    for (const row of evalRows) {
      const due = dueOf.get(row.id);
      if (due !== undefined) evalLags.push(row.at.getTime() - due);
    }

    // Overdue → suspended: the last suspend call of each account (streaming and studio).
    const [svc] = await sql<{ n: string }[]>`
      select count(*) as n from services where account_id = ${ids[0] ?? ''}`;
    const expected = Number(svc?.n ?? 2);
    const suspends = new Map<string, number[]>();
    for (const c of cp.calls) {
      if (c.op !== 'suspend') continue;
      const list = suspends.get(c.accountId) ?? [];
      list.push(c.at);
      suspends.set(c.accountId, list);
    }
    const toSuspend: number[] = [];
    const notify: number[] = [];
    for (const id of ids) {
      const b = billed.get(id);
      if (b === undefined) continue;
      const n = notifyAt.get(id);
      if (n !== undefined) notify.push(n - b.t1);
      const calls = suspends.get(id) ?? [];
      if (calls.length >= expected) toSuspend.push(Math.max(...calls) - b.t1);
    }
    const result: ReleaseResult = {
      releases: R,
      released: lags.length,
      delaySeconds,
      warningSeconds: WARNING_S,
      ratePerSecond: o.ratePerSecond,
      lagMs: summary(lags),
      evaluationLagMs: summary(evalLags),
      baselineTimerLagMs,
      overdueToSuspendMs: summary(toSuspend),
      suspendCompleted: toSuspend.length,
      notifyMs: summary(notify),
      memory,
      daemonIdleRssMB,
    };
    log(`release: ${JSON.stringify({ ...result, memory: undefined })}`);
    return result;
  } finally {
    await daemon?.stop();
    await watch.close();
    await evaluate.close().catch(() => undefined);
    await listener.end({ timeout: 5 }).catch(() => undefined);
    await sql.end({ timeout: 5 }).catch(() => undefined);
    await cp.close().catch(() => undefined);
    await deleteKeys(redis, prefix).catch(() => undefined);
    await db.drop();
  }
}

/** `count` delayed no-op jobs due over 2 s, a worker here: start minus due instant, ms. */
async function bareTimerLag(ctx: BenchContext, prefix: string, count: number): Promise<Summary> {
  const queue = new Queue('bench-timer', { connection: ctx.redis, prefix });
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const lags: number[] = [];
  const worker = new Worker(
    'bench-timer',
    (job) => {
      lags.push(Date.now() - (job.timestamp + (job.opts.delay ?? 0)));
      return Promise.resolve();
    },
    { connection, prefix, concurrency: 16 },
  );
  worker.on('error', () => undefined);
  try {
    await worker.waitUntilReady();
    await queue.addBulk(
      Array.from({ length: count }, (_, i) => ({
        name: 'timer',
        data: {},
        opts: { delay: 1_000 + Math.round((i * 2_000) / count), removeOnComplete: true },
      })),
    );
    await waitUntil('bare delayed jobs', () => Promise.resolve(lags.length >= count), 60_000, 50);
  } finally {
    await worker.close();
    connection.disconnect();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
  return summary(lags);
}
