/**
 * Child process of the benchmark (test/bench/run.ts): measures the balance scan in a process of
 * its own so that its peak RSS is the scan's alone. Not a test; run by run.ts as
 *
 *   node --import tsx test/bench/scan-child.ts
 *
 * with BENCH_DB_URL, BENCH_REDIS_URL, BENCH_PREFIX, BENCH_SCAN_MODE and BENCH_RUNS in the
 * environment. Modes:
 *
 * - `compare`: BENCH_RUNS rounds, each one bare cursor read of the scanned columns, one
 *   candidate selection alone (balanceCandidates page by page, no fan-out) and one full balance
 *   scan (the real balance-scan job handler: candidates page by page, fan-out with the real
 *   QueueSet.addBulk and evaluationOptions, repairs, reconcile) on an emptied queue prefix.
 * - `bare` / `scan`: one run of that measurement only, for the peak RSS.
 *
 * Prints one JSON line on stdout.
 */
import type { Job } from 'bullmq';
import { sql } from 'drizzle-orm';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { balanceScanJob } from '../../jobs/balance-scan';
import type { JobContext } from '../../jobs/context';
import { systemClock } from '../../src/adapters/clock/clock';
import { databaseControlPlane } from '../../src/adapters/control-plane/control-plane';
import { createDb } from '../../src/adapters/db/client';
import { balanceCandidates } from '../../src/adapters/db/scan-queries';
import { OutboxRelay } from '../../src/adapters/queue/outbox-relay';
import { QueueSet } from '../../src/adapters/queue/queues';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { deleteKeys } from '../support/daemon';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
};

const DB_URL = env('BENCH_DB_URL');
const REDIS_URL = env('BENCH_REDIS_URL');
const PREFIX = env('BENCH_PREFIX');
const MODE = env('BENCH_SCAN_MODE');
const RUNS = Number(process.env.BENCH_RUNS ?? '3');

const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

async function main(): Promise<void> {
  const baseRss = process.memoryUsage().rss;
  const configResult = loadConfig({
    DATABASE_URL: DB_URL,
    REDIS_URL,
    QUEUE_PREFIX: PREFIX,
    LOG_LEVEL: 'silent',
  });
  if (!configResult.ok) throw new Error(JSON.stringify(configResult.problems));
  const config = configResult.config;
  const logger = createLogger('silent');
  const handle = await createDb(DB_URL, '/unused', { poolSize: 2, applicationName: 'bench-scan' });
  const raw = postgres(DB_URL, { max: 1, onnotice: () => undefined });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  const queues = new QueueSet(redis, PREFIX);
  const relay = new OutboxRelay(handle.db, queues, systemClock, logger);
  const ctx: JobContext = {
    db: handle.db,
    config,
    logger,
    clock: systemClock,
    queues,
    relay,
    controlPlane: databaseControlPlane(),
  };
  // Warm up connections (not timed).
  await raw`select 1`;
  await handle.db.execute(sql`select 1`);
  await redis.ping();
  const readyRss = process.memoryUsage().rss;

  const bare = async (): Promise<{ ms: number; rows: number }> => {
    const started = performance.now();
    let rows = 0;
    const cursor = raw`
      select id, enforcement_state, episode_started_at, available_balance_minor,
             low_balance_threshold_minor, earliest_unpaid_due_at
        from accounts`.cursor(config.scanPageSize);
    for await (const batch of cursor) rows += batch.length;
    return { ms: performance.now() - started, rows };
  };

  const selectOnly = async (): Promise<{ ms: number; candidates: number; pages: number }> => {
    const started = performance.now();
    const now = systemClock.now();
    let cursor = '';
    let candidates = 0;
    let pages = 0;
    for (;;) {
      const page = await balanceCandidates(
        handle.db,
        cursor,
        config.scanPageSize,
        now,
        config.rules,
      );
      pages += 1;
      if (page.length === 0) break;
      candidates += page.length;
      cursor = page[page.length - 1] ?? cursor;
      if (page.length < config.scanPageSize) break;
    }
    return { ms: performance.now() - started, candidates, pages };
  };

  const fullScan = async (): Promise<{ ms: number; candidates: number; queued: number }> => {
    await deleteKeys(redis, PREFIX);
    // The handler reports progress per page (one Redis call each in the daemon); a no-op here.
    const job = {
      data: { origin: 'bench' },
      updateProgress: () => Promise.resolve(),
    } as unknown as Job;
    const started = performance.now();
    const result = (await balanceScanJob(job, ctx, logger)) as { candidates: number };
    const ms = performance.now() - started;
    const counts = await queues.byName.evaluate.getJobCounts('waiting', 'prioritized');
    return {
      ms,
      candidates: result.candidates,
      queued: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
    };
  };

  const out: Record<string, unknown> = { mode: MODE, pageSize: config.scanPageSize };
  if (MODE === 'compare') {
    const rounds: unknown[] = [];
    for (let i = 0; i < RUNS; i += 1) {
      rounds.push({ bare: await bare(), select: await selectOnly(), scan: await fullScan() });
    }
    out.rounds = rounds;
  } else if (MODE === 'bare') {
    out.bare = await bare();
  } else if (MODE === 'scan') {
    out.scan = await fullScan();
  } else {
    throw new Error(`unknown BENCH_SCAN_MODE ${MODE}`);
  }
  out.rssMB = {
    atStart: mb(baseRss),
    ready: mb(readyRss),
    // maxRSS is in KiB on Linux.
    peak: mb(process.resourceUsage().maxRSS * 1024),
  };
  await deleteKeys(redis, PREFIX);
  await queues.close();
  redis.disconnect();
  await raw.end({ timeout: 5 });
  await handle.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`scan child failed: ${String(err instanceof Error ? err.stack : err)}\n`);
  process.exit(1);
});
