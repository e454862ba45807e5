/**
 * Benchmark part (run.ts; skipped with BENCH_SKIP=effects): control-plane effects per second
 * against a loopback control-plane sink running in its own process (cp-sink-child.ts, the fake
 * control plane of test/support: it checks each HMAC signature and counts calls per key).
 *
 * On a database of its own, BENCH_EFFECTS accounts each get one streaming service under an
 * operator's hold (so a suspend is wanted and no evaluation undoes it). A daemon child (HTTP
 * control plane = the sink, the default EFFECTS_CONCURRENCY unless BENCH_EFFECTS_CONCURRENCY is
 * set) starts and finishes its start-up scan; then one INSERT adds BENCH_EFFECTS pending
 * control-plane outbox rows (one suspend per service). The relay (polled every 100 ms here)
 * dispatches them as effects jobs; the figure is effects/s from the first call at the sink to
 * the moment every row is settled, plus the duplicates (calls per key > 1), which must be 0.
 *
 * Baselines, same run, same concurrency C (the daemon's effects concurrency):
 * - bare HTTP: BENCH_EFFECTS signed POSTs from this process to a fresh sink child, C at a time
 *   over keep-alive connections (node:http): what the sink and loopback allow;
 * - no-op jobs: BENCH_EFFECTS jobs through a BullMQ queue named `effects` with a no-op worker of
 *   concurrency C in this process: what BullMQ alone moves on this host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import {
  signBody,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
} from '../../src/adapters/control-plane/control-plane';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';
import { deleteKeys } from '../support/daemon';
import type { SinkStats } from './cp-sink-child';
import type { EffectsResult, Throughput } from './report';
import {
  cpuSeconds,
  log,
  REDIS_URL,
  ROOT,
  round,
  sleep,
  stopChild,
  track,
  waitUntil,
  watchQueues,
  type BenchContext,
  type DaemonHandle,
} from './common';

const pad = (i: number) => String(i).padStart(6, '0');

interface Sink {
  url: string;
  secret: string;
  stats(): Promise<SinkStats>;
  stop(): Promise<void>;
}

async function startSink(): Promise<Sink> {
  const child: ChildProcess = track(
    spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/bench/cp-sink-child.ts')], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const first = await new Promise<{ url: string; secret: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { url: string; secret: string }));
    child.once('exit', (code) => reject(new Error(`sink child exited with ${code}`)));
  });
  return {
    ...first,
    stats: () =>
      new Promise<SinkStats>((resolve) => {
        const on = (m: unknown) => {
          if (typeof m === 'object' && m !== null && 'stats' in m) {
            child.off('message', on);
            resolve((m as { stats: SinkStats }).stats);
          }
        };
        child.on('message', on);
        child.send('stats');
      }),
    stop: () => stopChild(child, 5_000),
  };
}

export async function effectsPhase(
  ctx: BenchContext,
  o: { effects: number; concurrency: number; daemonEnv: Record<string, string> },
): Promise<EffectsResult> {
  const N = o.effects;
  const C = o.concurrency;
  const db = await ctx.createDatabase('effects');
  const prefix = ctx.prefix('effects');
  const noopPrefix = ctx.prefix('effects-noop');
  const setup = await createDb(db.url, '/unused', { poolSize: 2 });
  await migrate(setup.db);
  await setup.close();
  const sql = postgres(db.url, { max: 2, onnotice: () => undefined });
  // Balance above the low-balance threshold and no bills: no evaluation touches them; the
  // operator's hold keeps each suspend wanted when its effect is claimed.
  await sql`
    insert into accounts (id, currency, email, phone, available_balance_minor, time_zone)
    select 'eff-' || lpad(i::text, 6, '0'), 'USD', 'eff-' || i || '@example.com',
           '+1555' || lpad(i::text, 7, '0'), 1000000, 'UTC'
      from generate_series(1, ${N}) i`;
  await sql`
    insert into services (id, account_id, kind, status, operator_hold)
    select id || '-s', id, 'streaming', 'suspended', true from accounts`;

  let daemon: DaemonHandle | null = null;
  let sink: Sink | null = null;
  const watch = await watchQueues(prefix, ['scan'], { keepReturnValues: ['scan'] });
  try {
    log(`effects: bare HTTP baseline, ${N} signed POSTs, ${C} at a time`);
    const bareSink = await startSink();
    let bareHttp: Throughput;
    try {
      bareHttp = await bareHttpCalls(bareSink, N, C);
    } finally {
      await bareSink.stop();
    }
    log(`effects: bare HTTP ${JSON.stringify(bareHttp)}`);
    const noopJobs = await noopEffectsJobs(ctx, noopPrefix, N, C);
    log(`effects: no-op jobs ${JSON.stringify(noopJobs)}`);

    sink = await startSink();
    daemon = ctx.startDaemon({
      url: db.url,
      prefix,
      cp: { url: sink.url, secret: sink.secret },
      label: 'effects',
      env: { OUTBOX_POLL_INTERVAL: '100ms', ...o.daemonEnv },
    });
    const d = daemon;
    const alive = () => {
      if (d.exited()) throw new Error(`effects: the daemon exited early (see ${d.logFile})`);
    };
    await waitUntil(
      'effects daemon start-up scan',
      () => {
        alive();
        return Promise.resolve((watch.stats.get('scan')?.returnValues.length ?? 0) > 0);
      },
      120_000,
      250,
    );
    await sleep(1_000);

    const cpuBefore = cpuSeconds(d.pid);
    await sql`
      insert into outbox (idempotency_key, kind, account_id, payload)
      select 'suspend-bench-v1-' || id || '-1', 'control-plane', id,
             jsonb_build_object('op', 'suspend', 'serviceId', id || '-s', 'episodeSeq', 1)
        from accounts`;
    const committedAt = Date.now();
    log(`effects: ${N} pending control-plane rows inserted; waiting for the daemon`);
    let settledAt = 0;
    let relayedAt = 0;
    let statuses: Record<string, number> = {};
    await waitUntil(
      'every control-plane effect settled',
      async () => {
        alive();
        const rows = await sql<{ status: string; n: number }[]>`
          select status, count(*)::int as n from outbox where kind = 'control-plane'
           group by status`;
        statuses = Object.fromEntries(rows.map((r) => [r.status, r.n]));
        if (relayedAt === 0 && (statuses.pending ?? 0) === 0) relayedAt = Date.now();
        const open = (statuses.pending ?? 0) + (statuses.dispatched ?? 0);
        if (open === 0) settledAt = Date.now();
        return open === 0;
      },
      Math.max(120_000, N * 20),
      50,
    );
    const daemonCpuSeconds = cpuSeconds(d.pid) - cpuBefore;
    // Late repeats (a retry after a lost answer) would arrive after the rows settled.
    await sleep(1_000);
    const stats = await sink.stats();
    const seconds = (settledAt - stats.firstAt) / 1000;
    return {
      effects: N,
      concurrency: C,
      daemon: {
        items: N,
        seconds: round(seconds, 2),
        perSecond: round(N / seconds, 0),
        commitToSettledSeconds: round((settledAt - committedAt) / 1000, 2),
        commitToRelayedSeconds: round((relayedAt - committedAt) / 1000, 2),
        daemonCpuMsPerEffect: round((daemonCpuSeconds * 1000) / N, 2),
        statuses,
        sink: stats,
        duplicates: stats.requests - stats.calls,
      },
      bareHttp,
      noopJobs,
    };
  } finally {
    await daemon?.stop();
    await sink?.stop();
    await watch.close();
    await sql.end({ timeout: 5 }).catch(() => undefined);
    await deleteKeys(ctx.redis, prefix).catch(() => undefined);
    await deleteKeys(ctx.redis, noopPrefix).catch(() => undefined);
    await db.drop();
  }
}

/** `n` signed POSTs like the daemon's, `c` at a time over `c` keep-alive connections. */
async function bareHttpCalls(sink: Sink, n: number, c: number): Promise<Throughput> {
  const agent = new Agent({ keepAlive: true, maxSockets: c });
  const url = new URL(sink.url);
  const post = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({
        op: 'suspend',
        accountId: `bare-${pad(i)}`,
        serviceId: `bare-${pad(i)}-s`,
        idempotencyKey: `suspend-bare-v1-${pad(i)}`,
        reason: 'overdue',
      });
      const timestamp = String(Math.floor(Date.now() / 1000));
      const req = request(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'idempotency-key': `suspend-bare-v1-${pad(i)}`,
            [TIMESTAMP_HEADER]: timestamp,
            [SIGNATURE_HEADER]: signBody(sink.secret, timestamp, body),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () =>
            res.statusCode === 200
              ? resolve()
              : reject(new Error(`sink answered ${res.statusCode}`)),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      for (let i = next++; i < n; i = next++) await post(i);
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  agent.destroy();
  const stats = await sink.stats();
  if (stats.calls !== n) throw new Error(`bare HTTP: ${stats.calls} of ${n} calls accepted`);
  return { items: n, seconds: round(seconds, 2), perSecond: round(n / seconds, 0) };
}

/** `n` no-op jobs through a queue named `effects`, worked `c` at a time in this process. */
async function noopEffectsJobs(
  ctx: BenchContext,
  prefix: string,
  n: number,
  c: number,
): Promise<Throughput> {
  const queue = new Queue('effects', { connection: ctx.redis, prefix });
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  let done = 0;
  let lastAt = 0;
  const worker = new Worker(
    'effects',
    () => {
      done += 1;
      lastAt = Date.now();
      return Promise.resolve(null);
    },
    { connection, prefix, concurrency: c, autorun: false },
  );
  try {
    for (let i = 0; i < n; i += 500) {
      await queue.addBulk(
        Array.from({ length: Math.min(500, n - i) }, (_, j) => ({
          name: 'control-plane',
          data: { outboxKey: `noop-${pad(i + j)}` },
          opts: { jobId: `noop-${pad(i + j)}`, removeOnComplete: true },
        })),
      );
    }
    const started = Date.now();
    void worker.run();
    await waitUntil('no-op effects jobs', () => Promise.resolve(done >= n), 300_000, 20);
    const seconds = (lastAt - started) / 1000;
    return { items: n, seconds: round(seconds, 2), perSecond: round(n / seconds, 0) };
  } finally {
    await worker.close();
    connection.disconnect();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}
