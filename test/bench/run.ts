/**
 * Whole-daemon benchmark (`npm run bench`; not a vitest test). Loopback traffic only. One run,
 * one process tree (this process and the children it starts, all stopped at the end), one
 * markdown table (printed, and written with the JSON to bench-results/).
 *
 *   npm run bench                                         # scan at 100,000 and 1,000,000 accounts
 *   BENCH_SIZES=20000 BENCH_NOTIFY_N=2000 npm run bench   # quick run
 *
 * Settings: BENCH_SIZES (account counts of the scan figures, "100000,1000000"; evaluations,
 * daemon memory and payments run at the largest size, the two-daemon scaling at the smallest;
 * BENCH_ACCOUNTS=n alone still means BENCH_SIZES=n), BENCH_RUNS (scan rounds, 3), BENCH_PAYMENTS (1000),
 * BENCH_PAY_RATE (paced payments per second, 50), BENCH_LOW_PAYMENTS (200) at BENCH_LOW_RATE
 * (a second paced rate, 100/s), BENCH_BURST (payments fired at once, 1000), BENCH_EVAL_WINDOW_S (120),
 * BENCH_SCALE_WINDOW_S (longest evaluation window of a scaling run, 120), BENCH_RELEASES (200),
 * BENCH_RELEASE_RATE (overdue bills per second, 10), BENCH_NOTIFY_N (20000), BENCH_NOTIFY_RATE
 * (rate limit per channel, 200), BENCH_NOTIFY_SECONDS (10), BENCH_INGEST_ITEMS (bills and
 * payments each, 20000), BENCH_INGEST_ACCOUNTS (2000), BENCH_INGEST_BATCH (1000), BENCH_EFFECTS
 * (control-plane effects, 5000), BENCH_EFFECTS_CONCURRENCY (the daemon's EFFECTS_CONCURRENCY in
 * that phase; default: the daemon's default), BENCH_SKIP
 * (comma list of scaling, daemon, release, ingest, effects, notify), BENCH_LOG_LEVEL (daemon log level, warn), BENCH_TIMEOUT_S (whole
 * run, 3600), BENCH_KEEP_DB=1, BENCH_CPU_PROF=1, BENCH_DAEMON_NODE_FLAGS, TEST_DATABASE_URL,
 * TEST_REDIS_URL.
 *
 * The daemon child runs `node dist/main.js` when dist/main.js exists (the bundled build), else
 * `node --import tsx src/main.ts`; the JSON says which (`daemon`).
 *
 * Every database is `ow_bench_<tag>_<part>` and every queue prefix `{bench-<tag>-<part>}`, both
 * dropped / deleted at the end, also when the run fails, times out or is interrupted (the run
 * itself is a child of a thin shim so that tsx's signal relay cannot kill it mid-cleanup: see
 * runShim at the end; `kill -9` of the run itself is the one case left behind).
 *
 * 1. Scan, at each size (generate.ts builds the data; child test/bench/scan-child.ts, no workers
 *    running): the bare cursor read of the columns the scan filters on (the baseline) against the
 *    full balance scan (the real job handler: balanceCandidates pages + QueueSet.addBulk
 *    fan-out), best of BENCH_RUNS, ms per 1k rows; the peak RSS of a process doing only the scan.
 * 2. Scaling (phase-scaling.ts), on copies of the smallest size's database: the start-up scan's
 *    fan-out evaluated by one daemon, then by two; evaluations/s and their ratio.
 * 3. Evaluations, at the largest size: a baseline of no-op BullMQ jobs (one row lock each) at the
 *    daemon's evaluate concurrency; then the daemon itself (HTTP control plane = the fake one of
 *    test/support on loopback) scans at start-up and evaluates every candidate (at most
 *    BENCH_EVAL_WINDOW_S; the rest is dropped); evaluations/s; its VmHWM sampled from /proc.
 * 4. Payment → resume latency, same daemon: BENCH_PAYMENTS suspended accounts paid with UPDATE
 *    bills (the billing system's write; the trigger NOTIFYs), paced, then a burst; per account,
 *    from the UPDATE's commit to the last resume call at the fake control plane. Baseline: the
 *    NOTIFY's arrival at a LISTEN in this process.
 * 5. Releases (phase-release.ts): overdue → suspended latency, Redis bytes per pending studio
 *    release, release lag behind the due instant.
 * 6. Ingest (phase-ingest.ts): bills and payments per second over HTTP, one client, batches of
 *    1,000, against a bare multi-row INSERT of the same rows.
 * 7. Control-plane effects (phase-effects.ts): BENCH_EFFECTS pending suspend rows worked by a
 *    daemon child against the fake control plane in a process of its own; effects/s from the
 *    first call to the last row settled, and duplicates (calls per key > 1). Baselines at the
 *    same concurrency: bare signed HTTP calls to the sink, and no-op jobs on an `effects` queue.
 * 8. Notifications (notify-bench.ts as a child): messages/s against no-op jobs on the same
 *    queues, duplicates at the SMTP and SMS sinks, the rate limit held.
 *
 * report.ts turns the results into rows (value, baseline, ratio, goal, met) and prints a "why /
 * what would close it" line for each missed goal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { constants as osConstants, cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';
import { loadConfig } from '../../src/config';
import { startFakeControlPlane, type FakeControlPlane } from '../support/control-plane-server';
import { deleteKeys } from '../support/daemon';
import {
  CHANNEL,
  cpuSeconds,
  envNumber,
  log,
  msLeft,
  percentile,
  readMem,
  REDIS_URL,
  ROOT,
  round,
  runJsonChild,
  SERVER_URL,
  setDeadline,
  sleep,
  stopAllChildren,
  stopChild,
  track,
  waitUntil,
  watchQueues,
  type BenchContext,
  type BenchDb,
  type DaemonHandle,
  type DaemonSpec,
} from './common';
import { generate } from './generate';
import type { NotifyBenchResult } from './notify-bench';
import { effectsPhase } from './phase-effects';
import { ingestPhase } from './phase-ingest';
import { releasePhase } from './phase-release';
import { scalingPhase } from './phase-scaling';
import {
  buildRows,
  renderMarkdown,
  type BenchResults,
  type DaemonMemory,
  type EvaluationResult,
  type PaymentResult,
  type ScanSizeResult,
} from './report';

const SIZES = (process.env.BENCH_SIZES ?? process.env.BENCH_ACCOUNTS ?? '100000,1000000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isSafeInteger(n) && n > 0)
  .sort((a, b) => a - b)
  .filter((n, i, all) => all.indexOf(n) === i);
const PAYMENTS = envNumber('BENCH_PAYMENTS', 1000);
const PAY_RATE = envNumber('BENCH_PAY_RATE', 50);
const BURST = envNumber('BENCH_BURST', 1000);
const RUNS = envNumber('BENCH_RUNS', 3);
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'warn';
const EVAL_WINDOW_S = envNumber('BENCH_EVAL_WINDOW_S', 120);
const SCALE_WINDOW_S = envNumber('BENCH_SCALE_WINDOW_S', 120);
const LOW_RATE = envNumber('BENCH_LOW_RATE', 100);
const LOW_PAYMENTS = envNumber('BENCH_LOW_PAYMENTS', 200);
const RELEASES = envNumber('BENCH_RELEASES', 200);
const RELEASE_RATE = envNumber('BENCH_RELEASE_RATE', 10);
const NOTIFY_N = envNumber('BENCH_NOTIFY_N', 20_000);
const NOTIFY_RATE = envNumber('BENCH_NOTIFY_RATE', 200);
const NOTIFY_SECONDS = envNumber('BENCH_NOTIFY_SECONDS', 10);
const TIMEOUT_MS = envNumber('BENCH_TIMEOUT_S', 3600) * 1000;
const INGEST_ITEMS = envNumber('BENCH_INGEST_ITEMS', 20_000);
const INGEST_ACCOUNTS = envNumber('BENCH_INGEST_ACCOUNTS', 2_000);
const INGEST_BATCH = envNumber('BENCH_INGEST_BATCH', 1_000);
const EFFECTS = envNumber('BENCH_EFFECTS', 5_000);
const EFFECTS_CONCURRENCY_OVERRIDE = process.env.BENCH_EFFECTS_CONCURRENCY;
const SKIP = new Set(
  (process.env.BENCH_SKIP ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== ''),
);
const KEEP_DB = process.env.BENCH_KEEP_DB === '1';

/** The daemon's default evaluate concurrency and pool size: the no-op baseline uses the same. */
const DAEMON_DEFAULTS = (() => {
  const r = loadConfig({
    DATABASE_URL: SERVER_URL,
    REDIS_URL,
    QUEUE_PREFIX: '{bench}',
    LOG_LEVEL: 'silent',
  });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return {
    evaluateConcurrency: r.config.evaluateConcurrency,
    effectsConcurrency: r.config.effectsConcurrency,
    dbPoolSize: r.config.dbPoolSize,
  };
})();
const EVAL_CONCURRENCY = DAEMON_DEFAULTS.evaluateConcurrency;
const POOL = DAEMON_DEFAULTS.dbPoolSize;
const EFFECTS_CONCURRENCY =
  EFFECTS_CONCURRENCY_OVERRIDE === undefined
    ? DAEMON_DEFAULTS.effectsConcurrency
    : envNumber('BENCH_EFFECTS_CONCURRENCY', DAEMON_DEFAULTS.effectsConcurrency);

const TAG = randomBytes(5).toString('hex');
const RESULTS_DIR = path.join(ROOT, 'bench-results');
const STAMP = new Date().toISOString().replace(/[:.]/g, '-');

function dbUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

// ------------------------------------------------------------------------------------------
// Cleanup: everything the run creates registers how to undo it, run last-first at the end, on
// failure, on SIGINT/SIGTERM and at the hard deadline.

const cleanups = new Map<number, { what: string; run: () => Promise<void> }>();
let nextCleanup = 0;

function onCleanup(what: string, run: () => Promise<void>): () => void {
  const id = nextCleanup++;
  cleanups.set(id, { what, run });
  return () => cleanups.delete(id);
}

let cleaning: Promise<void> | null = null;
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren();
    for (const id of [...cleanups.keys()].sort((a, b) => b - a)) {
      const entry = cleanups.get(id);
      cleanups.delete(id);
      await entry?.run().catch((err: unknown) => log(`cleanup ${entry.what}: ${String(err)}`));
    }
  })();
  return cleaning;
}

// Opened by runInner (never in the shim process, see the end of this file).
let admin!: postgres.Sql;
let redis!: Redis;

async function createDatabase(part: string, template?: BenchDb): Promise<BenchDb> {
  const name = `ow_bench_${TAG}_${part}`;
  await admin.unsafe(
    `create database "${name}"${template === undefined ? '' : ` template "${template.name}"`}`,
  );
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    forget();
    if (KEEP_DB) log(`kept database ${name}`);
    else await admin.unsafe(`drop database if exists "${name}" with (force)`);
  };
  const forget = onCleanup(`database ${name}`, drop);
  log(`database ${name}${template === undefined ? '' : ` (copy of ${template.name})`}`);
  return { name, url: dbUrl(name), drop };
}

const prefixOf = (part: string) => `{bench-${TAG}-${part}}`;

// ------------------------------------------------------------------------------------------
// The daemon child: the one place that decides its command.

const DIST_MAIN = path.join(ROOT, 'dist/main.js');
const MEM_PROBE = path.join(ROOT, 'test/bench/mem-probe.mjs');

/**
 * The daemon as `npm start` runs it: the bundle (`npm run bench` builds it first) with the same
 * heap limit; BENCH_DAEMON_NODE_FLAGS replaces the flags.
 */
function daemonCommand(): { mode: 'dist' | 'tsx'; args: string[] } {
  const flags = (process.env.BENCH_DAEMON_NODE_FLAGS ?? '--max-old-space-size=512')
    .split(' ')
    .filter((f) => f !== '');
  const profile =
    process.env.BENCH_CPU_PROF === '1' ? ['--cpu-prof', '--cpu-prof-dir', RESULTS_DIR] : [];
  if (existsSync(DIST_MAIN)) {
    return { mode: 'dist', args: [...profile, ...flags, '--import', MEM_PROBE, DIST_MAIN] };
  }
  return {
    mode: 'tsx',
    args: [
      ...profile,
      ...flags,
      '--import',
      'tsx',
      '--import',
      MEM_PROBE,
      path.join(ROOT, 'src/main.ts'),
    ],
  };
}

function startDaemonChild(spec: DaemonSpec): DaemonHandle {
  const dataDir = path.join(tmpdir(), `ow-bench-${TAG}-${randomBytes(3).toString('hex')}`);
  const logFile = path.join(RESULTS_DIR, `daemon-${spec.label}-${STAMP}.log`);
  const memFile = path.join(RESULTS_DIR, `daemon-mem-${spec.label}-${STAMP}.jsonl`);
  const { args } = daemonCommand();
  const child: ChildProcess = track(
    spawn(process.execPath, args, {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        NODE_ENV: 'production',
        DATABASE_URL: spec.url,
        REDIS_URL,
        QUEUE_PREFIX: spec.prefix,
        CONTROL_PLANE_URL: spec.cp.url,
        CONTROL_PLANE_SECRET: spec.cp.secret,
        LOG_LEVEL,
        DATA_DIR: dataDir,
        BENCH_MEM_FILE: memFile,
        PORT: '0',
        // One scan at start-up; the schedule would rescan every minute otherwise.
        SCAN_INTERVAL: '1h',
        PLAN_SCAN_INTERVAL: '1h',
        // The bench suspends thousands of accounts at once on purpose: no breaker.
        SUSPENSION_BREAKER: 'off',
        ...spec.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const out = createWriteStream(logFile);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  let exited = false;
  child.on('exit', () => (exited = true));
  const removeDataDir = () => {
    rmSync(dataDir, { recursive: true, force: true });
    return Promise.resolve();
  };
  const forget = onCleanup(`daemon data dir ${dataDir}`, removeDataDir);
  return {
    pid: child.pid ?? 0,
    logFile,
    memFile,
    exited: () => exited,
    stop: async () => {
      await stopChild(child);
      forget();
      await removeDataDir();
    },
  };
}

// ------------------------------------------------------------------------------------------
// 1. Scan at one size

async function scanChild(
  url: string,
  prefix: string,
  mode: 'compare' | 'bare' | 'scan',
): Promise<Record<string, unknown>> {
  return runJsonChild(
    'test/bench/scan-child.ts',
    {
      BENCH_DB_URL: url,
      BENCH_REDIS_URL: REDIS_URL,
      BENCH_PREFIX: prefix,
      BENCH_SCAN_MODE: mode,
      BENCH_RUNS: String(RUNS),
    },
    `scan child (${mode})`,
  );
}

interface Measured {
  ms: number;
}

async function scanAtSize(db: BenchDb, size: number): Promise<ScanSizeResult> {
  const handle = await createDb(db.url, '/unused', { poolSize: 2 });
  await migrate(handle.db);
  await handle.close();
  const t0 = performance.now();
  const generated = await generate(db.url, size);
  const generateSeconds = round((performance.now() - t0) / 1000, 1);

  const prefix = prefixOf(`scan${size}`);
  log(`scan ${size}: compare (bare read vs candidate selection vs full scan)`);
  const compare = await scanChild(db.url, prefix, 'compare');
  const rounds = compare.rounds as {
    bare: Measured & { rows: number };
    select: Measured & { candidates: number; pages: number };
    scan: Measured & { candidates: number; queued: number };
  }[];
  const best = (pick: (r: (typeof rounds)[number]) => number) =>
    round(Math.min(...rounds.map(pick)));
  const bestMs = {
    bare: best((r) => r.bare.ms),
    select: best((r) => r.select.ms),
    fullScan: best((r) => r.scan.ms),
  };
  log(`scan ${size}: peak RSS of a bare-read process and of a scan process`);
  const bareRss = await scanChild(db.url, prefix, 'bare');
  const scanRss = await scanChild(db.url, prefix, 'scan');
  await deleteKeys(redis, prefix);
  const rows = rounds[0]?.bare.rows ?? size;
  const per1k = (x: number) => round(x / (rows / 1000), 3);
  const result: ScanSizeResult = {
    accounts: size,
    generateSeconds,
    generate: generated,
    pageSize: Number(compare.pageSize),
    rows,
    candidates: rounds[0]?.scan.candidates ?? 0,
    queued: rounds[0]?.scan.queued ?? 0,
    pages: rounds[0]?.select.pages ?? 0,
    rounds,
    bestMs,
    msPer1kRows: {
      bare: per1k(bestMs.bare),
      select: per1k(bestMs.select),
      fullScan: per1k(bestMs.fullScan),
    },
    ratio: {
      fullScanOverBare: round(bestMs.fullScan / bestMs.bare, 2),
      selectOverBare: round(bestMs.select / bestMs.bare, 2),
    },
    rssMB: {
      bareProcess: bareRss.rssMB as ScanSizeResult['rssMB']['bareProcess'],
      scanProcess: scanRss.rssMB as ScanSizeResult['rssMB']['scanProcess'],
    },
  };
  log(`scan ${size}: ${JSON.stringify({ bestMs, ratio: result.ratio, rss: result.rssMB })}`);
  return result;
}

// ------------------------------------------------------------------------------------------
// 3. Evaluations

/** No-op jobs at the daemon's concurrency, each taking one row lock in one transaction. */
async function noopJobBaseline(url: string, prefix: string, jobs: number): Promise<number> {
  const sql = postgres(url, { max: POOL, onnotice: () => undefined });
  const producer = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  const workerConn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('bench-noop', { connection: producer, prefix });
  try {
    const ids = await sql<{ id: string }[]>`select id from accounts order by md5(id) limit ${jobs}`;
    await queue.addBulk(
      ids.map((r) => ({
        name: 'noop',
        data: { accountId: r.id },
        opts: { removeOnComplete: { age: 3600, count: 10_000 } },
      })),
    );
    let done = 0;
    let started = 0;
    let finished = 0;
    const worker = new Worker(
      'bench-noop',
      async (job) => {
        if (started === 0) started = performance.now();
        const accountId = (job.data as { accountId: string }).accountId;
        await sql.begin(async (tx) => {
          await tx`select id from accounts where id = ${accountId} for update`;
        });
        done += 1;
        if (done === ids.length) finished = performance.now();
      },
      { connection: workerConn, prefix, concurrency: EVAL_CONCURRENCY },
    );
    worker.on('error', () => undefined);
    try {
      await waitUntil('no-op jobs', () => Promise.resolve(done >= ids.length), 120_000, 50);
    } finally {
      await worker.close();
    }
    return ids.length / ((finished - started) / 1000);
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    producer.disconnect();
    workerConn.disconnect();
    await sql.end({ timeout: 5 });
  }
}

interface MemSample {
  t: number;
  rssKb: number;
  hwmKb: number;
}

/** The daemon's process.memoryUsage() sample with the highest RSS, in MB (from mem-probe.mjs). */
function peakBreakdown(file: string): Record<string, number> | null {
  try {
    const samples = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, number>);
    const peak = samples.reduce((a, b) => ((b.rss ?? 0) > (a.rss ?? 0) ? b : a));
    const out: Record<string, number> = {};
    for (const k of ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers']) {
      out[k] = round((peak[k] ?? 0) / 1024 / 1024);
    }
    return out;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------------------------
// 4. Payments

async function payAndMeasure(
  sql: postgres.Sql,
  cp: FakeControlPlane,
  notifyAt: Map<string, number>,
  accounts: readonly { id: string; held: number }[],
  ratePerSec: number | null,
): Promise<Omit<PaymentResult, 'ratePerSec'>> {
  const paid = new Map<string, { t0: number; t1: number }>();
  for (const a of accounts) notifyAt.delete(a.id);
  const pay = async (id: string) => {
    const t0 = Date.now();
    await sql`
      update bills set paid_minor = amount_minor, status = 'paid', updated_at = now()
       where account_id = ${id} and status = 'unpaid'`;
    paid.set(id, { t0, t1: Date.now() });
  };
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let k = 0; k < accounts.length; k += 1) {
    const account = accounts[k];
    if (account === undefined) continue;
    if (ratePerSec !== null) {
      const wait = started + (k * 1000) / ratePerSec - performance.now();
      if (wait > 0) await sleep(wait);
    }
    pending.push(pay(account.id));
  }
  await Promise.all(pending);
  const spanMs = performance.now() - started;
  const resumesOf = () => {
    const byAccount = new Map<string, number[]>();
    for (const c of cp.calls) {
      if (c.op !== 'resume') continue;
      const p = paid.get(c.accountId);
      if (p === undefined || c.at < p.t0) continue;
      const list = byAccount.get(c.accountId) ?? [];
      list.push(c.at);
      byAccount.set(c.accountId, list);
    }
    return byAccount;
  };
  const complete = (byAccount: Map<string, number[]>) =>
    accounts.filter((a) => (byAccount.get(a.id)?.length ?? 0) >= a.held).length;
  await waitUntil(
    'resume calls',
    () => Promise.resolve(complete(resumesOf()) === accounts.length),
    60_000,
    100,
  ).catch((err: unknown) => log(String(err)));
  const byAccount = resumesOf();
  const stageRows = await sql<{ account_id: string; kind: string; at: Date }[]>`
    select account_id, kind, min(created_at) as at from enforcement_events
     where account_id = any(${sql.array(accounts.map((a) => a.id))}::text[])
       and kind in ('service-resumed', 'effect-applied')
       and created_at >= to_timestamp(${Math.min(...[...paid.values()].map((p) => p.t0)) / 1000})
     group by account_id, kind`;
  const stage = new Map<string, number[]>();
  for (const row of stageRows) {
    const p = paid.get(row.account_id);
    if (p === undefined) continue;
    const name = row.kind === 'service-resumed' ? 'evaluationTxStart' : 'firstEffectTxStart';
    const list = stage.get(name) ?? [];
    list.push(row.at.getTime() - p.t1);
    stage.set(name, list);
  }
  const stagesMs: PaymentResult['stagesMs'] = {};
  for (const [name, list] of stage) {
    stagesMs[name] = { p50: percentile(list, 50), p99: percentile(list, 99) };
  }
  const last: number[] = [];
  const first: number[] = [];
  const notify: number[] = [];
  const roundTrip: number[] = [];
  for (const a of accounts) {
    const p = paid.get(a.id);
    const calls = byAccount.get(a.id);
    if (p === undefined) continue;
    roundTrip.push(p.t1 - p.t0);
    const n = notifyAt.get(a.id);
    if (n !== undefined) notify.push(n - p.t1);
    if (calls === undefined || calls.length < a.held) continue;
    last.push(Math.max(...calls) - p.t1);
    first.push(Math.min(...calls) - p.t1);
  }
  return {
    count: accounts.length,
    stagesMs,
    completed: last.length,
    latencyMs: {
      p50: percentile(last, 50),
      p90: percentile(last, 90),
      p99: percentile(last, 99),
      max: percentile(last, 100),
    },
    firstResumeMs: { p50: percentile(first, 50), p99: percentile(first, 99) },
    notifyMs: {
      p50: percentile(notify, 50),
      p99: percentile(notify, 99),
      max: percentile(notify, 100),
    },
    commitRoundTripMs: { p50: percentile(roundTrip, 50), p99: percentile(roundTrip, 99) },
    spanMs: round(spanMs),
  };
}

/** Suspended accounts with the number of services their overdue hold covers (resume calls). */
async function suspendedAccounts(
  sql: postgres.Sql,
  exclude: ReadonlySet<string>,
  limit: number,
): Promise<{ id: string; held: number }[]> {
  const rows = await sql<{ id: string; held: string }[]>`
    select a.id, count(*) filter (where s.overdue_hold and s.status <> 'released') as held
      from accounts a join services s on s.account_id = a.id
     where a.enforcement_state = 'suspended'
     group by a.id
    having count(*) filter (where s.overdue_hold and s.status <> 'released') > 0
     order by md5(a.id)
     limit ${limit + exclude.size}`;
  return rows
    .filter((r) => !exclude.has(r.id))
    .slice(0, limit)
    .map((r) => ({ id: r.id, held: Number(r.held) }));
}

/** Steps 3 and 4 on the largest size's database: evaluations, payments, daemon memory. */
async function daemonPhase(
  db: BenchDb,
  size: number,
): Promise<{
  evaluations: EvaluationResult;
  payments: Record<string, PaymentResult | number>;
  daemonMemory: DaemonMemory;
}> {
  const prefix = prefixOf('daemon');
  const url = db.url;
  const sql = postgres(url, { max: POOL, onnotice: () => undefined });
  const listener = postgres(url, { max: 1, onnotice: () => undefined });
  let cp: FakeControlPlane | null = null;
  let daemon: DaemonHandle | null = null;
  let watch: Awaited<ReturnType<typeof watchQueues>> | null = null;
  const queues: Queue[] = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    log('evaluations: no-op job baseline');
    const noopPerSec = await noopJobBaseline(url, prefix, 5_000);
    await deleteKeys(redis, prefix);

    cp = await startFakeControlPlane();
    watch = await watchQueues(prefix, ['evaluate', 'effects', 'scan'], {
      keepReturnValues: ['scan'],
    });
    const events = watch.stats;
    for (const name of ['evaluate', 'effects', 'scan']) {
      queues.push(new Queue(name, { connection: redis, prefix }));
    }
    const qByName = (name: string) => queues.find((q) => q.name === name);
    const mem: MemSample[] = [];
    let evalWindow: {
      completed: number;
      failed: number;
      first: number;
      firstActive: number;
      last: number;
      cpu: number;
    } | null = null;
    const spawnedAt = Date.now();
    daemon = startDaemonChild({ url, prefix, cp, label: `main-${size}` });
    const d = daemon;
    const pid = d.pid;
    sampler = setInterval(() => {
      const m = readMem(pid);
      if (m) mem.push({ t: Date.now() - spawnedAt, ...m });
    }, 100);
    log(`evaluations: daemon pid ${pid} started; waiting for its start-up scan and evaluations`);
    const busy = async (name: string) => {
      const c = await qByName(name)?.getJobCounts('waiting', 'active', 'prioritized');
      return Object.values(c ?? {}).reduce((a, b) => a + b, 0);
    };
    const pendingEffects = async () => {
      const [row] = await sql<{ n: string }[]>`
        select count(*) as n from outbox
         where kind = 'control-plane' and status in ('pending', 'dispatched')`;
      return Number(row?.n ?? 0);
    };
    // Evaluate until the queue is empty, or for at most BENCH_EVAL_WINDOW_S seconds (the 1M
    // backlog takes far longer on a small host): then the evaluations still waiting are dropped
    // so the payment phase measures latency without a scan backlog in front of it.
    let quiet = 0;
    let dropped = 0;
    let windowEnded = false;
    const windowUntil = Date.now() + EVAL_WINDOW_S * 1000;
    const scanResults = events.get('scan')!.returnValues;
    await waitUntil(
      'daemon to scan and evaluate the candidates',
      async () => {
        if (d.exited()) throw new Error(`daemon exited early (see ${d.logFile})`);
        const scans = scanResults.filter(
          (r) => typeof r === 'object' && r !== null && 'candidates' in r,
        ).length;
        if (scans === 0) return false;
        if (!windowEnded && Date.now() > windowUntil) {
          windowEnded = true;
          evalWindow = { ...events.get('evaluate')!, cpu: cpuSeconds(pid) };
          const evaluate = qByName('evaluate')!;
          const left = await evaluate.getJobCounts('waiting', 'prioritized');
          dropped = (left.waiting ?? 0) + (left.prioritized ?? 0);
          await evaluate.drain();
          log(`evaluations: window over; dropped ${dropped} waiting evaluations`);
        }
        const idle =
          (await busy('evaluate')) === 0 &&
          (await busy('scan')) === 0 &&
          (await busy('effects')) === 0 &&
          (await pendingEffects()) === 0;
        quiet = idle ? quiet + 1 : 0;
        return quiet >= 3;
      },
      EVAL_WINDOW_S * 1000 + 600_000,
      500,
    );
    const ev = evalWindow ?? { ...events.get('evaluate')!, cpu: cpuSeconds(pid) };
    const daemonCpuAfterEval = ev.cpu;
    const ef = events.get('effects')!;
    // From the first evaluation job taken to the last one finished (a batch job's own time
    // counts).
    const evalSpanS = (ev.last - (ev.firstActive || ev.first)) / 1000;
    const hwmAfterEval = Math.max(...mem.map((m) => m.hwmKb));
    const [state] = await sql<Record<string, string>[]>`
      select count(*) filter (where enforcement_state = 'suspended') as suspended,
             count(*) filter (where enforcement_state = 'protected') as protected
        from accounts`;
    const evaluations: EvaluationResult = {
      accounts: size,
      completed: ev.completed,
      failed: ev.failed,
      spanSeconds: round(evalSpanS, 2),
      perSecond: round(ev.completed / evalSpanS),
      baselineNoopJobsPerSecond: round(noopPerSec),
      ratioToBaseline: round(ev.completed / evalSpanS / noopPerSec, 3),
      droppedAfterWindow: dropped,
      fromSpawnSeconds: round((ev.last - spawnedAt) / 1000, 1),
      daemonCpuSeconds: round(daemonCpuAfterEval, 1),
      daemonCpuShare: round(daemonCpuAfterEval / ((ev.last - spawnedAt) / 1000), 2),
      daemonScans: scanResults,
      effects: {
        completed: ef.completed,
        failed: ef.failed,
        perSecond: round(ef.completed / ((ef.last - (ef.firstActive || ef.first)) / 1000)),
        controlPlaneCalls: cp.calls.length,
      },
      accountStates: { suspended: Number(state?.suspended), protected: Number(state?.protected) },
    };
    log(`evaluations: ${JSON.stringify(evaluations)}`);

    // 4. Payments
    const cpNow = cp;
    const notifyAt = new Map<string, number>();
    await listener.listen(CHANNEL, (payload) => {
      if (!notifyAt.has(payload)) notifyAt.set(payload, Date.now());
    });
    const used = new Set<string>();
    let resuspended = 0;
    /** `n` suspended accounts not paid yet; paid ones are made overdue again when short. */
    const cohort = async (n: number) => {
      await waitUntil('effects to settle', async () => (await pendingEffects()) === 0, 120_000);
      let picked = await suspendedAccounts(sql, used, n);
      if (picked.length < n) {
        // Not enough suspended accounts left: make paid ones overdue again with a new past-due
        // bill (triggers on: the daemon suspends them at once), then pay those.
        const again = [...used].slice(0, n - picked.length);
        resuspended += again.length;
        for (const id of again) used.delete(id);
        log(`payments: re-suspending ${again.length} paid accounts`);
        await sql`
          insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at)
          select 'bill-' || a || '-again-' || ${resuspended}, a, 'live', 9000, 0,
                 now() - interval '2 days', now() - interval '1 minute'
            from unnest(${sql.array(again)}::text[]) a`;
        await waitUntil(
          're-suspension',
          async () => {
            const [row] = await sql<{ n: string }[]>`
              select count(*) as n from accounts
               where id = any(${sql.array(again)}::text[]) and enforcement_state = 'suspended'`;
            return Number(row?.n) === again.length && (await pendingEffects()) === 0;
          },
          300_000,
          250,
        );
        picked = await suspendedAccounts(sql, used, n);
      }
      for (const a of picked) used.add(a.id);
      return picked;
    };
    const payments: Record<string, PaymentResult | number> = {};
    for (const [name, n, rate] of [
      ['paced', PAYMENTS, PAY_RATE],
      ['pacedLow', LOW_PAYMENTS, LOW_RATE],
      ['burst', BURST, null],
    ] as const) {
      if (n <= 0) continue;
      const accounts = await cohort(n);
      log(`payments: ${name}, ${accounts.length} at ${rate ?? 'once'}/s`);
      const result = await payAndMeasure(sql, cpNow, notifyAt, accounts, rate);
      log(`payments: ${name} ${JSON.stringify(result)}`);
      payments[name] = { ratePerSec: rate, ...result };
    }
    payments.resuspended = resuspended;

    // Daemon memory over the whole phase.
    clearInterval(sampler);
    const last = readMem(pid);
    const hwmKb = Math.max(last?.hwmKb ?? 0, ...mem.map((m) => m.hwmKb));
    const firstStable = mem.find((m) => m.t > 1_000);
    const daemonMemory: DaemonMemory = {
      peakMB: round(hwmKb / 1024),
      peakAfterEvaluationsMB: round(hwmAfterEval / 1024),
      rssAtEndMB: round((last?.rssKb ?? 0) / 1024),
      rssAfter1sMB: round((firstStable?.rssKb ?? 0) / 1024),
      samples: mem.length,
      atPeakRss: peakBreakdown(d.memFile),
    };
    return { evaluations, payments, daemonMemory };
  } finally {
    clearInterval(sampler);
    await daemon?.stop();
    await watch?.close();
    for (const q of queues) await q.close().catch(() => undefined);
    await listener.end({ timeout: 5 }).catch(() => undefined);
    await sql.end({ timeout: 5 }).catch(() => undefined);
    await cp?.close().catch(() => undefined);
    await deleteKeys(redis, prefix).catch(() => undefined);
  }
}

// ------------------------------------------------------------------------------------------
// 6. Notifications

async function notifyPhase(): Promise<NotifyBenchResult> {
  const db = await createDatabase('notify');
  const prefix = prefixOf('notify');
  try {
    return (await runJsonChild(
      'test/bench/notify-bench.ts',
      {
        BENCH_NOTIFY_DB_URL: db.url,
        BENCH_PREFIX: prefix,
        TEST_REDIS_URL: REDIS_URL,
        NOTIFY_BENCH_N: String(NOTIFY_N),
        NOTIFY_BENCH_RATE: String(NOTIFY_RATE),
        NOTIFY_BENCH_SECONDS: String(NOTIFY_SECONDS),
        NOTIFY_BENCH_TIMEOUT_S: String(Math.max(60, Math.floor(msLeft() / 1000))),
      },
      'notify bench',
    )) as unknown as NotifyBenchResult;
  } finally {
    await deleteKeys(redis, prefix).catch(() => undefined);
    await db.drop();
  }
}

// ------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (SIZES.length === 0) throw new Error('BENCH_SIZES has no positive account count');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const started = Date.now();
  setDeadline(started + TIMEOUT_MS);
  const { mode, args } = daemonCommand();
  const results: BenchResults = {
    sizes: SIZES,
    startedAt: new Date(started).toISOString(),
    tag: TAG,
    machine: {
      cpus: cpus().length,
      loadAverageAtStart: loadavg().map((x) => round(x, 2)),
      note: 'shared 2-core host; compare ratios, not absolute times',
    },
    daemon: { mode, argv: ['node', ...args.map((a) => path.relative(ROOT, a) || a)] },
    settings: {
      RUNS,
      PAYMENTS,
      PAY_RATE,
      LOW_PAYMENTS,
      LOW_RATE,
      BURST,
      EVAL_WINDOW_S,
      SCALE_WINDOW_S,
      RELEASES,
      RELEASE_RATE,
      NOTIFY_N,
      NOTIFY_RATE,
      NOTIFY_SECONDS,
      INGEST_ITEMS,
      INGEST_ACCOUNTS,
      INGEST_BATCH,
      EFFECTS,
      EFFECTS_CONCURRENCY,
      TIMEOUT_S: TIMEOUT_MS / 1000,
      LOG_LEVEL,
      EVAL_CONCURRENCY,
      POOL,
      daemonNodeFlags: process.env.BENCH_DAEMON_NODE_FLAGS ?? '--max-old-space-size=512',
    },
    scan: [],
    skipped: [...SKIP].map((s) => `${s} (BENCH_SKIP)`),
  };
  log(`run ${TAG}: sizes ${SIZES.join(', ')}, daemon via ${mode}, timeout ${TIMEOUT_MS / 1000} s`);

  const ctx: BenchContext = {
    redis,
    startDaemon: startDaemonChild,
    createDatabase,
    prefix: prefixOf,
  };
  let failed = false;
  try {
    let largest: BenchDb | null = null;
    for (const [i, size] of SIZES.entries()) {
      const db = await createDatabase(`n${size}`);
      results.scan.push(await scanAtSize(db, size));
      if (i === 0 && !SKIP.has('scaling')) {
        log(`scaling: 1 vs 2 daemons on copies of the ${size}-account database`);
        results.scaling = await scalingPhase(ctx, db, size, SCALE_WINDOW_S);
      }
      if (i === SIZES.length - 1) largest = db;
      else await db.drop();
    }
    if (largest !== null && !SKIP.has('daemon')) {
      Object.assign(results, await daemonPhase(largest, SIZES[SIZES.length - 1] ?? 0));
    }
    await largest?.drop();
    if (!SKIP.has('release')) {
      results.release = await releasePhase(ctx, {
        releases: RELEASES,
        ratePerSecond: RELEASE_RATE,
      });
    }
    if (!SKIP.has('ingest')) {
      results.ingest = await ingestPhase(ctx, {
        accounts: INGEST_ACCOUNTS,
        items: INGEST_ITEMS,
        batch: INGEST_BATCH,
      });
    }
    if (!SKIP.has('effects')) {
      log(`effects: ${EFFECTS} control-plane effects at concurrency ${EFFECTS_CONCURRENCY}`);
      results.effects = await effectsPhase(ctx, {
        effects: EFFECTS,
        concurrency: EFFECTS_CONCURRENCY,
        daemonEnv:
          EFFECTS_CONCURRENCY_OVERRIDE === undefined
            ? {}
            : { EFFECTS_CONCURRENCY: String(EFFECTS_CONCURRENCY) },
      });
    }
    if (!SKIP.has('notify')) {
      log(`notifications: ${NOTIFY_N} messages (child test/bench/notify-bench.ts)`);
      results.notify = await notifyPhase();
    }
  } catch (err) {
    failed = true;
    results.error = err instanceof Error ? err.message : String(err);
    log(`bench failed: ${String(err instanceof Error ? err.stack : err)}`);
  } finally {
    await cleanupAll();
    await finalSweep();
  }
  results.finishedAt = new Date().toISOString();
  results.loadAverageAtEnd = loadavg().map((x) => round(x, 2));
  results.totalSeconds = round((Date.now() - started) / 1000, 1);
  finish(results, failed ? 1 : 0);
}

/** Whatever of this run is left (a part that failed before registering its cleanup). */
async function finalSweep(): Promise<void> {
  await deleteKeys(redis, `{bench-${TAG}`).catch(() => undefined);
  if (!KEEP_DB) {
    const left = await admin<{ datname: string }[]>`
      select datname from pg_database where datname like ${`ow\\_bench\\_${TAG}%`}`.catch(() => []);
    for (const { datname } of left) {
      await admin
        .unsafe(`drop database if exists "${datname}" with (force)`)
        .catch(() => undefined);
    }
  }
}

function finish(results: BenchResults, code: number): void {
  const rows = buildRows(results, RUNS);
  results.rows = rows;
  const heading = `### overdue-worker bench, ${SIZES.map((s) => s.toLocaleString('en')).join(' and ')} accounts (daemon: ${results.daemon.mode === 'dist' ? 'node dist/main.js' : 'tsx src/main.ts'}; ${String(results.totalSeconds)} s)`;
  const markdown = renderMarkdown(results, rows, heading);
  const base = path.join(RESULTS_DIR, `bench-${SIZES.join('-')}-${STAMP}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${base}.md`, `${markdown}\n`);
  process.stdout.write(
    `${markdown}\n\nresults: ${path.relative(ROOT, base)}.json, ${path.relative(ROOT, base)}.md\n`,
  );
  void Promise.all([admin.end({ timeout: 5 }), redis.quit()]).finally(() => process.exit(code));
}

// Interrupted or past the hard deadline: stop the children, drop and delete what the run made.
// Repeated signals are ignored while that runs (one Ctrl-C arrives up to three times: from the
// terminal, from tsx's relay and from the shim); `kill -9` forces an exit.
let aborting = false;
function abort(why: string, code: number): void {
  if (aborting) {
    log(`${why}: already cleaning up`);
    return;
  }
  aborting = true;
  log(`${why}: cleaning up`);
  void cleanupAll()
    .then(finalSweep)
    .finally(() => process.exit(code));
}

function runInner(): void {
  admin = postgres(SERVER_URL, { max: 1, onnotice: () => undefined });
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  process.on('SIGINT', () => abort('SIGINT', 130));
  process.on('SIGTERM', () => abort('SIGTERM', 143));
  setTimeout(() => abort(`BENCH_TIMEOUT_S passed by 2 minutes`, 1), TIMEOUT_MS + 120_000).unref();
  main().catch((err: unknown) => {
    log(`bench failed: ${String(err instanceof Error ? err.stack : err)}`);
    abort('failure', 1);
  });
}

/**
 * `npm run bench` starts this file under the tsx CLI, which relays a signal to it and SIGKILLs
 * it when it does not acknowledge within 30 ms (easily missed on a loaded host): the cleanup
 * would never run. So this process only starts the real run as a child (`node --import tsx`,
 * same process group, so Ctrl-C reaches it directly), forwards signals to it and exits with its
 * code; if tsx kills this shim, the run still cleans up and exits on its own.
 */
function runShim(): void {
  const inner = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    cwd: process.cwd(),
    env: { ...process.env, BENCH_INNER: '1' },
    stdio: 'inherit',
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (inner.exitCode === null && inner.signalCode === null) inner.kill(signal);
    });
  }
  inner.on('exit', (code, signal) =>
    process.exit(code ?? (signal === null ? 1 : 128 + (osConstants.signals[signal] ?? 0))),
  );
}

if (process.env.BENCH_INNER === '1') runInner();
else runShim();
