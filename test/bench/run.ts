/**
 * Enforcement daemon benchmark (`npm run bench`; not a vitest test). Loopback traffic only.
 *
 *   npm run bench                          # 1,000,000 accounts
 *   BENCH_ACCOUNTS=100000 npm run bench    # 100,000 accounts
 *
 * Other settings: BENCH_PAYMENTS (1000), BENCH_PAY_RATE (paced payments per second, 50),
 * BENCH_BURST (payments fired at once, 1000), BENCH_RUNS (scan rounds, 3), BENCH_LOG_LEVEL
 * (daemon log level, warn), BENCH_TIMEOUT (whole run, 30m), TEST_DATABASE_URL / TEST_REDIS_URL.
 *
 * What it does, in one run, on a fresh database (`ow_bench_<hex>`, dropped at the end) and a
 * private queue prefix (`{bench-<hex>}`, its keys deleted at the end):
 *
 * 1. Generates the accounts in SQL (generate_series, triggers off via session_replication_role),
 *    about 2 % low balance, 1 % overdue beyond the protection quota (suspended by the daemon),
 *    0.2 % overdue within it, 5 % with unpaid bills not yet due, duration-plan studios with
 *    instances and resource plans; then computes accounts.earliest_unpaid_due_at as migration
 *    0002 does and runs VACUUM ANALYZE.
 * 2. Scan (child process test/bench/scan-child.ts, no workers running): the bare cursor read of
 *    the columns the scan filters on (the baseline) against the full balance scan (the real job
 *    handler: balanceCandidates pages + QueueSet.addBulk fan-out), best of BENCH_RUNS, and the peak
 *    RSS of a process doing only the scan.
 * 3. Evaluations: a baseline of no-op BullMQ jobs (one row lock each) at the daemon's evaluate
 *    concurrency; then the daemon itself (src/main.ts as a child, HTTP control plane = the fake one
 *    of test/support on loopback) scans at start-up and evaluates every candidate; evaluations/s
 *    from the evaluate queue's completed events; its VmHWM sampled from /proc.
 * 4. Payment → resume latency: BENCH_PAYMENTS suspended accounts paid with UPDATE bills (the
 *    billing system's write; the trigger NOTIFYs), paced at BENCH_PAY_RATE/s, then a burst; per
 *    account, from the UPDATE's commit (acknowledged to the client) to the last resume call
 *    arriving at the fake control plane. Baseline: the NOTIFY's arrival at a LISTEN in this process.
 *
 * Writes bench-results/bench-<accounts>-<time>.json and prints a markdown table.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';
import { startFakeControlPlane, type FakeControlPlane } from '../support/control-plane-server';
import { deleteKeys } from '../support/daemon';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const N = Number(process.env.BENCH_ACCOUNTS ?? '1000000');
const PAYMENTS = Number(process.env.BENCH_PAYMENTS ?? '1000');
const PAY_RATE = Number(process.env.BENCH_PAY_RATE ?? '50');
const BURST = Number(process.env.BENCH_BURST ?? '1000');
const RUNS = Number(process.env.BENCH_RUNS ?? '3');
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'warn';
const EVAL_WINDOW_S = Number(process.env.BENCH_EVAL_WINDOW_S ?? '120');
const LOW_RATE = Number(process.env.BENCH_LOW_RATE ?? '10');
const LOW_PAYMENTS = Number(process.env.BENCH_LOW_PAYMENTS ?? '200');
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_S ?? '1800') * 1000;
/** The daemon's default EVALUATE_CONCURRENCY and pool size: the baseline uses the same. */
const EVAL_CONCURRENCY = 16;
const POOL = 10;
const CHANNEL = 'overdue_worker_account';

const deadline = Date.now() + TIMEOUT_MS;
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString()}] ${msg}\n`);

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] ?? Number.NaN;
}

async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 200,
): Promise<void> {
  const until = Math.min(deadline, Date.now() + timeoutMs);
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

function dbUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

// ------------------------------------------------------------------------------------------
// 1. Data

async function generate(url: string): Promise<Record<string, number>> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  const timings: Record<string, number> = {};
  const step = async (name: string, run: () => Promise<unknown>) => {
    const t = performance.now();
    await run();
    timings[name] = round((performance.now() - t) / 1000, 2);
    log(`generate: ${name} ${timings[name]} s`);
  };
  try {
    // Triggers (and the FK triggers) off for this session only.
    await sql`set session_replication_role = replica`;
    await sql`set maintenance_work_mem = '256MB'`;
    await step('accounts', () =>
      sql.unsafe(`
        insert into accounts (id, currency, available_balance_minor, time_zone, locale, email,
                              phone, notify_email, notify_sms)
        select 'acct-' || lpad(i::text, 8, '0'), 'USD',
               case when i % 50 = 3 then 500 + (i % 9000) else 1000000 + (i % 100000) end,
               (array['UTC', 'Asia/Shanghai', 'America/New_York', 'Europe/Berlin'])[1 + i % 4],
               'en', 'u' || i || '@example.com',
               case when i % 2 = 0 then '+1415' || lpad((i % 10000000)::text, 7, '0') end,
               true, true
          from generate_series(1, ${N}) i`),
    );
    // Every account streams; overdue, protected and every tenth account have all three live
    // services; 0.5 % have a duration-plan studio with one or two instances.
    await step('services', () =>
      sql.unsafe(`
        insert into services (id, account_id, kind)
        select 'acct-' || lpad(i::text, 8, '0') || '-' || k, 'acct-' || lpad(i::text, 8, '0'), k
          from generate_series(1, ${N}) i
         cross join (values ('streaming'), ('recording'), ('screenshots')) v(k)
         where k = 'streaming' or i % 100 = 11 or i % 500 = 13 or i % 10 = 0`),
    );
    await step('studios', async () => {
      await sql.unsafe(`
        insert into services (id, account_id, kind, plan_type)
        select 'acct-' || lpad(i::text, 8, '0') || '-studio', 'acct-' || lpad(i::text, 8, '0'),
               'studio', 'duration'
          from generate_series(1, ${N}) i where i % 400 in (11, 200)`);
      await sql.unsafe(`
        insert into studio_instances (id, account_id, service_id, name, streaming)
        select 'acct-' || lpad(i::text, 8, '0') || '-inst' || n, 'acct-' || lpad(i::text, 8, '0'),
               'acct-' || lpad(i::text, 8, '0') || '-studio', 'Stage ' || n, i % 3 = 0
          from generate_series(1, ${N}) i cross join generate_series(1, 2) n
         where i % 400 in (11, 200) and (n = 1 or i % 800 < 400)`);
    });
    await step('plans', () =>
      sql.unsafe(`
        insert into resource_plans (id, account_id, kind, total_units, used_units, starts_at,
                                    expires_at, purchased_at)
        select 'acct-' || lpad(i::text, 8, '0') || '-plan', 'acct-' || lpad(i::text, 8, '0'),
               'transcoding-minutes', 1000, case when i % 500 < 250 then 850 else 100 end,
               now() - interval '10 days',
               now() + case when i % 1000 < 500 then interval '20 days' else interval '3 days' end,
               now() - interval '10 days'
          from generate_series(1, ${N}) i where i % 250 in (3, 7)`),
    );
    await step('bills', () =>
      sql.unsafe(`
        insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at,
                           status)
        select 'bill-' || i || '-' || v.tag, 'acct-' || lpad(i::text, 8, '0'), v.product,
               v.amount, v.paid, v.due - interval '30 days', v.due, v.status
          from generate_series(1, ${N}) i
         cross join lateral (values
           ('od', 'live', 6000 + (i % 7) * 1000, 0,
              now() - make_interval(days => 1 + i % 20), 'unpaid', i % 100 = 11),
           ('oss', 'oss', 2000, 0, now() - interval '3 days', 'unpaid', i % 300 = 11),
           ('prot', 'live', 3000, 0, now() - interval '2 days', 'unpaid', i % 500 = 13),
           ('fut', 'live', 4000, 0, now() + make_interval(days => 1 + i % 20), 'unpaid',
              i % 20 = 5),
           ('paid', 'live', 5000, 5000, now() - make_interval(days => 30 + i % 60), 'paid',
              i % 4 = 0)
         ) v(tag, product, amount, paid, due, status, keep)
         where v.keep`),
    );
    // As migration 0002 does.
    await step('earliest_unpaid_due_at', () =>
      sql.unsafe(`
        update accounts a set earliest_unpaid_due_at = d.due
          from (select account_id, min(due_at) as due from bills
                 where status = 'unpaid' and amount_minor > paid_minor group by account_id) d
         where d.account_id = a.id`),
    );
    await sql`set session_replication_role = origin`;
    await step('vacuum_analyze', () => sql.unsafe('vacuum (analyze)'));
    const [counts] = await sql<Record<string, string>[]>`
      select (select count(*) from accounts) as accounts,
             (select count(*) from accounts where available_balance_minor < 10000) as low_balance,
             (select count(*) from accounts where earliest_unpaid_due_at < now()) as overdue,
             (select count(*) from services) as services,
             (select count(*) from studio_instances) as studio_instances,
             (select count(*) from resource_plans) as plans,
             (select count(*) from bills) as bills,
             pg_total_relation_size('accounts') as accounts_bytes`;
    for (const [k, v] of Object.entries(counts ?? {})) timings[`count_${k}`] = Number(v);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return timings;
}

// ------------------------------------------------------------------------------------------
// 2. Scan (child process)

interface Measured {
  ms: number;
}

async function scanChild(
  url: string,
  prefix: string,
  mode: 'compare' | 'bare' | 'scan',
): Promise<Record<string, unknown>> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'test/bench/scan-child.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        BENCH_DB_URL: url,
        BENCH_REDIS_URL: REDIS_URL,
        BENCH_PREFIX: prefix,
        BENCH_SCAN_MODE: mode,
        BENCH_RUNS: String(RUNS),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`scan child (${mode}) exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

// ------------------------------------------------------------------------------------------
// 3. Evaluations

/** No-op jobs at the daemon's concurrency, each taking one row lock in one transaction. */
async function noopJobBaseline(url: string, prefix: string, jobs: number): Promise<number> {
  const sql = postgres(url, { max: POOL, onnotice: () => undefined });
  const producer = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  const workerConn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('bench-noop', { connection: producer, prefix });
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
  await waitUntil('no-op jobs', () => Promise.resolve(done >= ids.length), 120_000, 50);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  producer.disconnect();
  workerConn.disconnect();
  await sql.end({ timeout: 5 });
  return ids.length / ((finished - started) / 1000);
}

interface MemSample {
  t: number;
  rssKb: number;
  hwmKb: number;
}

function readMem(pid: number): { rssKb: number; hwmKb: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    if (rss === undefined || hwm === undefined) return null;
    return { rssKb: Number(rss), hwmKb: Number(hwm) };
  } catch {
    return null;
  }
}

/** The daemon's process.memoryUsage() sample with the highest RSS, in MB (from mem-probe.ts). */
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

/** CPU seconds (user + system) a process has used so far; clock ticks are 1/100 s on Linux. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function startDaemonChild(
  url: string,
  prefix: string,
  cp: FakeControlPlane,
  logFile: string,
  memFile: string,
): ChildProcess {
  const dataDir = path.join(tmpdir(), `ow-bench-${randomBytes(4).toString('hex')}`);
  const profile =
    process.env.BENCH_CPU_PROF === '1'
      ? ['--cpu-prof', '--cpu-prof-dir', path.join(ROOT, 'bench-results')]
      : [];
  const child = spawn(
    process.execPath,
    [
      ...profile,
      ...(process.env.BENCH_DAEMON_NODE_FLAGS ?? '').split(' ').filter((f) => f !== ''),
      '--import',
      'tsx',
      '--import',
      path.join(ROOT, 'test/bench/mem-probe.ts'),
      path.join(ROOT, 'src/main.ts'),
    ],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        NODE_ENV: 'production',
        DATABASE_URL: url,
        REDIS_URL,
        QUEUE_PREFIX: prefix,
        CONTROL_PLANE_URL: cp.url,
        CONTROL_PLANE_SECRET: cp.secret,
        LOG_LEVEL,
        DATA_DIR: dataDir,
        BENCH_MEM_FILE: memFile,
        PORT: '0',
        // One scan at start-up; the schedule would rescan every minute otherwise.
        SCAN_INTERVAL: '1h',
        PLAN_SCAN_INTERVAL: '1h',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const out = createWriteStream(logFile);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return child;
}

// ------------------------------------------------------------------------------------------
// 4. Payments

interface PaymentResult {
  count: number;
  /** Server-side stages from the payment's commit (transaction start times of the daemon). */
  stagesMs: Record<string, { p50: number; p99: number }>;
  completed: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  firstResumeMs: { p50: number; p99: number };
  notifyMs: { p50: number; p99: number; max: number };
  commitRoundTripMs: { p50: number; p99: number };
  spanMs: number;
}

async function payAndMeasure(
  sql: postgres.Sql,
  cp: FakeControlPlane,
  notifyAt: Map<string, number>,
  accounts: readonly { id: string; held: number }[],
  ratePerSec: number | null,
): Promise<PaymentResult> {
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

// ------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const tag = randomBytes(5).toString('hex');
  const dbName = `ow_bench_${tag}`;
  const prefix = `{bench-${tag}}`;
  const url = dbUrl(dbName);
  const resultsDir = path.join(ROOT, 'bench-results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const results: Record<string, unknown> = {
    accounts: N,
    startedAt: new Date().toISOString(),
    machine: { note: 'shared 2-core host; compare ratios, not absolute times' },
    settings: {
      PAYMENTS,
      PAY_RATE,
      LOW_PAYMENTS,
      LOW_RATE,
      BURST,
      RUNS,
      LOG_LEVEL,
      EVAL_CONCURRENCY,
      EVAL_WINDOW_S,
      daemonNodeFlags: process.env.BENCH_DAEMON_NODE_FLAGS ?? '',
    },
  };
  const admin = postgres(SERVER_URL, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`create database "${dbName}"`);
  log(`database ${dbName}, queue prefix ${prefix}, ${N} accounts`);

  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  let sql: postgres.Sql | null = null;
  let listener: postgres.Sql | null = null;
  let cp: FakeControlPlane | null = null;
  let daemon: ChildProcess | null = null;
  const queueEvents: QueueEvents[] = [];
  const queues: Queue[] = [];
  const connections: Redis[] = [];
  try {
    const handle = await createDb(url, '/unused', { poolSize: 2 });
    await migrate(handle.db);
    await handle.close();

    // 1. Data
    const t0 = performance.now();
    results.generate = await generate(url);
    results.generateSeconds = round((performance.now() - t0) / 1000, 1);

    // 2. Scan
    log('scan: compare (bare read vs candidate selection vs full scan)');
    const compare = await scanChild(url, prefix, 'compare');
    const rounds = compare.rounds as {
      bare: Measured & { rows: number };
      select: Measured & { candidates: number; pages: number };
      scan: Measured & { candidates: number; queued: number };
    }[];
    const best = (pick: (r: (typeof rounds)[number]) => number) =>
      round(Math.min(...rounds.map(pick)));
    const bareMs = best((r) => r.bare.ms);
    const selectMs = best((r) => r.select.ms);
    const scanMs = best((r) => r.scan.ms);
    log('scan: peak RSS of a bare-read process and of a scan process');
    const bareRss = await scanChild(url, prefix, 'bare');
    const scanRss = await scanChild(url, prefix, 'scan');
    results.scan = {
      pageSize: compare.pageSize,
      rows: rounds[0]?.bare.rows,
      candidates: rounds[0]?.scan.candidates,
      queued: rounds[0]?.scan.queued,
      pages: rounds[0]?.select.pages,
      rounds,
      bestMs: { bare: bareMs, select: selectMs, fullScan: scanMs },
      ratio: {
        fullScanOverBare: round(scanMs / bareMs, 2),
        selectOverBare: round(selectMs / bareMs, 2),
      },
      rssMB: { bareProcess: bareRss.rssMB, scanProcess: scanRss.rssMB },
    };
    log(`scan: ${JSON.stringify((results.scan as { bestMs: unknown }).bestMs)}`);
    await deleteKeys(redis, prefix);

    // 3. Evaluations
    sql = postgres(url, { max: POOL, onnotice: () => undefined });
    log('evaluations: no-op job baseline');
    const noopPerSec = await noopJobBaseline(url, prefix, 5_000);
    await deleteKeys(redis, prefix);

    cp = await startFakeControlPlane();
    const events = new Map<
      string,
      { completed: number; failed: number; first: number; last: number }
    >();
    const scanResults: unknown[] = [];
    for (const name of ['evaluate', 'effects', 'scan']) {
      const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
      connections.push(connection);
      const qe = new QueueEvents(name, { connection, prefix });
      const stat = { completed: 0, failed: 0, first: 0, last: 0 };
      events.set(name, stat);
      qe.on('completed', ({ returnvalue }) => {
        const now = Date.now();
        if (stat.first === 0) stat.first = now;
        stat.last = now;
        stat.completed += 1;
        if (name === 'scan') scanResults.push(returnvalue);
      });
      qe.on('failed', () => (stat.failed += 1));
      qe.on('error', () => undefined);
      await qe.waitUntilReady();
      queueEvents.push(qe);
      queues.push(new Queue(name, { connection: redis, prefix }));
    }
    const qByName = (name: string) => queues.find((q) => q.name === name);
    const mem: MemSample[] = [];
    let evalWindow: {
      completed: number;
      failed: number;
      first: number;
      last: number;
      cpu: number;
    } | null = null;
    const spawnedAt = Date.now();
    const memFile = path.join(resultsDir, `daemon-mem-${N}-${stamp}.jsonl`);
    daemon = startDaemonChild(
      url,
      prefix,
      cp,
      path.join(resultsDir, `daemon-${N}-${stamp}.log`),
      memFile,
    );
    const pid = daemon.pid ?? 0;
    let exited = false;
    daemon.on('exit', () => (exited = true));
    const sampler = setInterval(() => {
      const m = readMem(pid);
      if (m) mem.push({ t: Date.now() - spawnedAt, ...m });
    }, 100);
    log(`evaluations: daemon pid ${pid} started; waiting for its start-up scan and evaluations`);
    const busy = async (name: string) => {
      const c = await qByName(name)?.getJobCounts('waiting', 'active', 'prioritized');
      return Object.values(c ?? {}).reduce((a, b) => a + b, 0);
    };
    const pendingEffects = async () => {
      const [row] = await sql!<{ n: string }[]>`
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
    await waitUntil(
      'daemon to scan and evaluate the candidates',
      async () => {
        if (exited) throw new Error('daemon exited early (see its log in bench-results/)');
        const scans = scanResults.filter(
          (r) => typeof r === 'object' && r !== null && 'candidates' in r,
        ).length;
        if (scans === 0) return false;
        if (!windowEnded && Date.now() > windowUntil) {
          windowEnded = true;
          evalWindow = { ...events.get('evaluate')!, cpu: cpuSeconds(pid) };
          const evaluate = qByName('evaluate')!;
          dropped = (await evaluate.getJobCounts('waiting', 'prioritized')).waiting ?? 0;
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
    const evalSpanS = (ev.last - ev.first) / 1000;
    const hwmAfterEval = Math.max(...mem.map((m) => m.hwmKb));
    const [state] = await sql<Record<string, string>[]>`
      select count(*) filter (where enforcement_state = 'suspended') as suspended,
             count(*) filter (where enforcement_state = 'protected') as protected
        from accounts`;
    results.evaluations = {
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
        perSecond: round(ef.completed / ((ef.last - ef.first) / 1000)),
        controlPlaneCalls: cp.calls.length,
      },
      accounts: { suspended: Number(state?.suspended), protected: Number(state?.protected) },
    };
    log(`evaluations: ${JSON.stringify(results.evaluations)}`);

    // 4. Payments
    listener = postgres(url, { max: 1, onnotice: () => undefined });
    const notifyAt = new Map<string, number>();
    await listener.listen(CHANNEL, (payload) => {
      if (!notifyAt.has(payload)) notifyAt.set(payload, Date.now());
    });
    const used = new Set<string>();
    let resuspended = 0;
    /** `n` suspended accounts not paid yet; paid ones are made overdue again when short. */
    const cohort = async (n: number) => {
      await waitUntil('effects to settle', async () => (await pendingEffects()) === 0, 120_000);
      let picked = await suspendedAccounts(sql!, used, n);
      if (picked.length < n) {
        // Not enough suspended accounts left: make paid ones overdue again with a new past-due
        // bill (triggers on: the daemon suspends them at once), then pay those.
        const again = [...used].slice(0, n - picked.length);
        resuspended += again.length;
        for (const id of again) used.delete(id);
        log(`payments: re-suspending ${again.length} paid accounts`);
        await sql!`
          insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at)
          select 'bill-' || a || '-again-' || ${resuspended}, a, 'live', 9000, 0,
                 now() - interval '2 days', now() - interval '1 minute'
            from unnest(${sql!.array(again)}::text[]) a`;
        await waitUntil(
          're-suspension',
          async () => {
            const [row] = await sql!<{ n: string }[]>`
              select count(*) as n from accounts
               where id = any(${sql!.array(again)}::text[]) and enforcement_state = 'suspended'`;
            return Number(row?.n) === again.length && (await pendingEffects()) === 0;
          },
          300_000,
          250,
        );
        picked = await suspendedAccounts(sql!, used, n);
      }
      for (const a of picked) used.add(a.id);
      return picked;
    };
    const runs: Record<string, unknown> = {};
    for (const [name, n, rate] of [
      ['paced', PAYMENTS, PAY_RATE],
      ['pacedLow', LOW_PAYMENTS, LOW_RATE],
      ['burst', BURST, null],
    ] as const) {
      if (n <= 0) continue;
      const accounts = await cohort(n);
      log(`payments: ${name}, ${accounts.length} at ${rate ?? 'once'}/s`);
      const result = await payAndMeasure(sql, cp, notifyAt, accounts, rate);
      log(`payments: ${name} ${JSON.stringify(result)}`);
      runs[name] = { ratePerSec: rate, ...result };
    }
    results.payments = { ...runs, resuspended };

    // Daemon memory over the whole run.
    clearInterval(sampler);
    const last = readMem(pid);
    const hwmKb = Math.max(last?.hwmKb ?? 0, ...mem.map((m) => m.hwmKb));
    const firstStable = mem.find((m) => m.t > 1_000);
    results.daemonMemory = {
      peakMB: round(hwmKb / 1024),
      peakAfterEvaluationsMB: round(hwmAfterEval / 1024),
      rssAtEndMB: round((last?.rssKb ?? 0) / 1024),
      rssAfter1sMB: round((firstStable?.rssKb ?? 0) / 1024),
      samples: mem.length,
      atPeakRss: peakBreakdown(memFile),
    };
    results.finishedAt = new Date().toISOString();
  } finally {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      const d = daemon;
      await Promise.race([
        new Promise((resolve) => d.on('exit', resolve)),
        sleep(40_000).then(() => d.kill('SIGKILL')),
      ]);
    }
    for (const qe of queueEvents) await qe.close().catch(() => undefined);
    for (const q of queues) await q.close().catch(() => undefined);
    for (const c of connections) c.disconnect();
    await listener?.end({ timeout: 5 }).catch(() => undefined);
    await sql?.end({ timeout: 5 }).catch(() => undefined);
    await cp?.close().catch(() => undefined);
    await deleteKeys(redis, prefix).catch(() => undefined);
    redis.disconnect();
    if (process.env.BENCH_KEEP_DB === '1') log(`kept database ${dbName}`);
    else
      await admin.unsafe(`drop database if exists "${dbName}" with (force)`).catch(() => undefined);
    await admin.end({ timeout: 5 });
  }

  const file = path.join(resultsDir, `bench-${N}-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${table(results)}\nresults: ${path.relative(ROOT, file)}\n`);
  process.exit(0);
}

function table(r: Record<string, unknown>): string {
  const scan = r.scan as {
    bestMs: { bare: number; select: number; fullScan: number };
    ratio: { fullScanOverBare: number; selectOverBare: number };
    rssMB: {
      bareProcess: { peak: number; ready: number };
      scanProcess: { peak: number; ready: number };
    };
    candidates: number;
    rows: number;
  };
  const ev = r.evaluations as {
    perSecond: number;
    baselineNoopJobsPerSecond: number;
    ratioToBaseline: number;
    completed: number;
  };
  const mem = r.daemonMemory as { peakMB: number; rssAfter1sMB: number };
  const pay = r.payments as Record<
    string,
    (PaymentResult & { ratePerSec: number | null }) | undefined
  >;
  const ok = (pass: boolean) => (pass ? 'yes' : '**no**');
  const lines = [
    `### overdue-worker bench, ${Number(r.accounts).toLocaleString('en')} accounts (${scan.candidates} scan candidates)`,
    '',
    '| figure | value | baseline | ratio | goal | met |',
    '| --- | ---: | ---: | ---: | --- | --- |',
    `| full balance scan (select + fan-out), best of ${RUNS} | ${scan.bestMs.fullScan} ms | bare read ${scan.bestMs.bare} ms (${scan.rows} rows) | ${scan.ratio.fullScanOverBare} | ≤ 3 | ${ok(scan.ratio.fullScanOverBare <= 3)} |`,
    `| candidate selection only (balanceCandidates pages) | ${scan.bestMs.select} ms | bare read ${scan.bestMs.bare} ms | ${scan.ratio.selectOverBare} | – | – |`,
    `| peak RSS, scan process | ${scan.rssMB.scanProcess.peak} MB | same process idle ${scan.rssMB.scanProcess.ready} MB; bare-read process ${scan.rssMB.bareProcess.peak} MB | ${round(scan.rssMB.scanProcess.peak / scan.rssMB.scanProcess.ready, 2)} | < 256 MB | ${ok(scan.rssMB.scanProcess.peak < 256)} |`,
    `| peak RSS (VmHWM), daemon src/main.ts | ${mem.peakMB} MB | idle process, same modules ${scan.rssMB.scanProcess.ready} MB | ${round(mem.peakMB / scan.rssMB.scanProcess.ready, 2)} | < 256 MB | ${ok(mem.peakMB < 256)} |`,
    `| evaluations/s (${ev.completed} evaluations) | ${ev.perSecond} | no-op jobs/s ${ev.baselineNoopJobsPerSecond} | ${ev.ratioToBaseline} | – | – |`,
  ];
  for (const kind of ['paced', 'pacedLow', 'burst'] as const) {
    const p = pay[kind];
    if (p === undefined) continue;
    lines.push(
      `| payment → resume p50 / p99, ${p.ratePerSec !== null ? `paced ${p.ratePerSec}/s` : `burst, fired in ${Math.round(p.spanMs)} ms`} (${p.completed}/${p.count}) | ${p.latencyMs.p50} / ${p.latencyMs.p99} ms (max ${p.latencyMs.max}) | NOTIFY at a listener ${p.notifyMs.p50} / ${p.notifyMs.p99} ms | ${round(p.latencyMs.p50 / Math.max(1, p.notifyMs.p50), 1)} / ${round(p.latencyMs.p99 / Math.max(1, p.notifyMs.p99), 1)} | p99 ≤ 1000 ms | ${ok(p.latencyMs.p99 <= 1000 && p.completed === p.count)} |`,
    );
  }
  return lines.join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${String(err instanceof Error ? err.stack : err)}\n`);
  process.exit(1);
});
