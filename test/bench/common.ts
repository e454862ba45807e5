/**
 * Helpers shared by the benchmark's parts (test/bench/run.ts and its phase modules): logging,
 * percentiles, the run's deadline, child processes that die with the run, /proc readings and
 * Redis memory of a key prefix.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { FakeControlPlane } from '../support/control-plane-server';

export { sleep };

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SERVER_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The database's NOTIFY channel for account changes (migrations' triggers). */
export const CHANNEL = 'overdue_worker_account';

export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
export const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString()}] ${msg}\n`);
};

export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${JSON.stringify(raw)}`);
  return n;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] ?? Number.NaN;
}

export function summary(values: readonly number[]): {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
} {
  return {
    count: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: percentile(values, 100),
  };
}

// ------------------------------------------------------------------------------------------
// The run's deadline (BENCH_TIMEOUT_S): every wait gives up at it.

let deadline = Number.POSITIVE_INFINITY;

export function setDeadline(at: number): void {
  deadline = at;
}

export function msLeft(): number {
  return deadline - Date.now();
}

export async function waitUntil(
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

// ------------------------------------------------------------------------------------------
// Child processes: `node --import tsx <file>` (never `npx tsx`, whose signals do not reach the
// real process), tracked so that the run kills every one it started, also on failure.

export const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 40_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Kills every child still running (SIGTERM, SIGKILL after `graceMs`). */
export async function stopAllChildren(graceMs = 10_000): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, graceMs)));
}

/**
 * Runs a TypeScript file of test/bench as a child with `env` added, stderr passed through, and
 * returns the JSON object on the last line of its stdout. Killed at the run's deadline.
 */
export async function runJsonChild(
  file: string,
  env: Record<string, string>,
  what: string,
): Promise<Record<string, unknown>> {
  const child = track(
    spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, file)], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const timer = setTimeout(
    () => {
      log(`${what}: the run's deadline passed; killing pid ${child.pid}`);
      child.kill('SIGKILL');
    },
    Math.max(1_000, msLeft()),
  );
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${what} exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

// ------------------------------------------------------------------------------------------
// /proc

export function readMem(pid: number): { rssKb: number; hwmKb: number } | null {
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

/** CPU seconds (user + system) a process has used so far; clock ticks are 1/100 s on Linux. */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

// ------------------------------------------------------------------------------------------
// Queue events

export interface QueueStat {
  completed: number;
  failed: number;
  first: number;
  last: number;
  /**
   * When the first job became active (epoch ms; 0 before): the start of the work, where `first`
   * (the first completion) leaves out the first job's own time, which matters when a job is a
   * batch of 200 accounts.
   */
  firstActive: number;
  /** Completion times (epoch ms) when `keepTimes` was asked for. */
  times: number[];
  returnValues: unknown[];
}

/** How many units of work a completed job stands for: accounts of an evaluate-batch job, else 1. */
export function jobWeight(returnvalue: unknown): number {
  if (typeof returnvalue === 'object' && returnvalue !== null && 'accounts' in returnvalue) {
    const r = returnvalue as { accounts: unknown; requeued?: unknown };
    if (typeof r.accounts === 'number') return r.accounts - Number(r.requeued ?? 0);
  }
  return 1;
}

/** Counts completed / failed events of the named queues of `prefix`. */
export async function watchQueues(
  prefix: string,
  names: readonly string[],
  options: { keepTimes?: boolean; keepReturnValues?: readonly string[] } = {},
): Promise<{ stats: Map<string, QueueStat>; close: () => Promise<void> }> {
  const stats = new Map<string, QueueStat>();
  const opened: { qe: QueueEvents; connection: Redis }[] = [];
  for (const name of names) {
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const qe = new QueueEvents(name, { connection, prefix });
    const stat: QueueStat = {
      completed: 0,
      failed: 0,
      first: 0,
      last: 0,
      firstActive: 0,
      times: [],
      returnValues: [],
    };
    stats.set(name, stat);
    qe.on('completed', ({ returnvalue }) => {
      const now = Date.now();
      if (stat.first === 0) stat.first = now;
      stat.last = now;
      // A batch evaluation job counts the accounts it evaluated (those it re-queued complete
      // later as jobs of their own); any other job counts one.
      stat.completed += jobWeight(returnvalue);
      if (options.keepTimes === true) stat.times.push(now);
      if (options.keepReturnValues?.includes(name) === true) stat.returnValues.push(returnvalue);
    });
    qe.on('failed', () => (stat.failed += 1));
    qe.on('active', () => {
      if (stat.firstActive === 0) stat.firstActive = Date.now();
    });
    qe.on('error', () => undefined);
    await qe.waitUntilReady();
    opened.push({ qe, connection });
  }
  return {
    stats,
    close: async () => {
      for (const { qe, connection } of opened) {
        await qe.close().catch(() => undefined);
        connection.disconnect();
      }
    },
  };
}

// ------------------------------------------------------------------------------------------
// Redis memory

/** Keys matching `<prefix>*` (SCAN). */
export async function prefixKeys(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** MEMORY USAGE (all nested values sampled) of each key; 0 for keys gone meanwhile. */
export async function memoryUsage(redis: Redis, keys: readonly string[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < keys.length; i += 500) {
    const pipeline = redis.pipeline();
    for (const key of keys.slice(i, i + 500)) pipeline.call('MEMORY', ['USAGE', key, 'SAMPLES', 0]);
    const replies = (await pipeline.exec()) ?? [];
    for (const [err, value] of replies) out.push(err === null ? Number(value ?? 0) : 0);
  }
  return out;
}

/** The bytes all keys of a prefix take (sum of MEMORY USAGE) and the server's used_memory. */
export async function prefixMemory(
  redis: Redis,
  prefix: string,
): Promise<{ keys: number; bytes: number; usedMemory: number }> {
  const keys = await prefixKeys(redis, prefix);
  const sizes = await memoryUsage(redis, keys);
  const info = await redis.info('memory');
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
  return { keys: keys.length, bytes: sizes.reduce((a, b) => a + b, 0), usedMemory: used };
}

// ------------------------------------------------------------------------------------------
// What run.ts hands its phases

/** A daemon child started by run.ts's startDaemonChild (the one place choosing its command). */
export interface DaemonHandle {
  readonly pid: number;
  readonly logFile: string;
  readonly memFile: string;
  exited(): boolean;
  /** SIGTERM, SIGKILL after 40 s; removes its DATA_DIR. */
  stop(): Promise<void>;
}

export interface DaemonSpec {
  readonly url: string;
  readonly prefix: string;
  /** The control plane the daemon calls (a fake one on loopback, in this process or a child). */
  readonly cp: Pick<FakeControlPlane, 'url' | 'secret'>;
  /** Names its log and memory files in bench-results/. */
  readonly label: string;
  /** Settings added to the daemon's environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** A database of this run (`ow_bench_<tag>_<part>`), dropped by the run's cleanup if not before. */
export interface BenchDb {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

export interface BenchContext {
  readonly redis: Redis;
  startDaemon(spec: DaemonSpec): DaemonHandle;
  /** Creates `ow_bench_<tag>_<part>`, empty or as a copy of `template`. */
  createDatabase(part: string, template?: BenchDb): Promise<BenchDb>;
  /** The queue prefix of a part: `{bench-<tag>-<part>}` (all deleted by the run's cleanup). */
  prefix(part: string): string;
}
