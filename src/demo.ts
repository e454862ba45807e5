import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { Redis } from 'ioredis';
import { createDb } from './adapters/db/client';
import { migrate } from './adapters/db/migrate';
import { assertRedisAnswers } from './adapters/queue/connection';
import { formatProblems, loadConfig } from './config';
import { startDaemon } from './daemon';
import { buildHttpServer } from './http/server';
import { createLogger } from './logger';
import { seedDemo } from './demo-seed';

/**
 * `npm run demo`: the daemon on embedded defaults, seeded with accounts that walk through every
 * rule on a compressed timeline (a studio released after two minutes, not 24 hours). Messages
 * land as files in the outbox folder. A composition root like src/main.ts.
 *
 * Redis: REDIS_URL (default 127.0.0.1:6379) if it answers; otherwise, when `redis-server` is
 * installed, a private one on a free loopback port that the demo starts and stops.
 */

const DEMO_DATA_DIR = path.resolve('data', 'demo');

/** Compressed policy timings; each can still be overridden from the environment. */
const DEMO_DEFAULTS: Record<string, string> = {
  DATA_DIR: DEMO_DATA_DIR,
  DEMO: 'true',
  HOST: '127.0.0.1',
  PORT: '8080',
  STUDIO_RELEASE_DELAY: '2m',
  STUDIO_RELEASE_WARNING: '1m',
  SCAN_INTERVAL: '15s',
  PLAN_SCAN_INTERVAL: '30s',
  QUIET_HOURS: 'off',
  LOG_LEVEL: 'warn',
  QUEUE_PREFIX: '{overdue-demo}',
};

/** The seeded account that pays its bill this long after the start (shows R7). */
const PAYMENT_AFTER_MS = 20_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function clearPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

async function privateRedis(): Promise<{ url: string; child: ChildProcess } | null> {
  const found = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  if (found.error || found.status !== 0) return null;
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 50; i += 1) {
    try {
      await assertRedisAnswers(url, 500);
      return { url, child };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  child.kill('SIGTERM');
  return null;
}

async function main(): Promise<void> {
  const env: Record<string, string | undefined> = { ...DEMO_DEFAULTS, ...process.env };
  delete env.DATABASE_URL; // the demo always runs on the embedded database
  env.DATA_DIR = process.env.DATA_DIR ?? DEMO_DATA_DIR;
  env.DASHBOARD_USER = process.env.DASHBOARD_USER ?? 'demo';
  env.DASHBOARD_PASSWORD = process.env.DASHBOARD_PASSWORD ?? randomBytes(9).toString('base64url');

  let redisChild: ChildProcess | null = null;
  const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  try {
    await assertRedisAnswers(redisUrl, 1_000);
  } catch (error) {
    const own = await privateRedis();
    if (own === null) {
      process.stderr.write(
        `overdue-worker demo: ${(error as Error).message}\n` +
          "(No 'redis-server' is installed here either, so the demo cannot start one of its own.)\n",
      );
      process.exit(1);
    }
    redisChild = own.child;
    env.REDIS_URL = own.url;
  }

  const parsed = loadConfig(env);
  if (!parsed.ok) {
    process.stderr.write(
      `overdue-worker demo: invalid configuration\n${formatProblems(parsed.problems)}\n`,
    );
    redisChild?.kill('SIGTERM');
    process.exit(1);
  }
  const config = parsed.config;
  const logger = createLogger(config.logLevel);

  // A fresh demo every run: the seeded timeline starts now, so the demo's database folder and
  // its queues (its own prefix) start empty.
  if (config.dataDir === DEMO_DATA_DIR) rmSync(DEMO_DATA_DIR, { recursive: true, force: true });
  await clearPrefix(config.redisUrl, config.queuePrefix);
  const database = await createDb(null, config.dataDir);
  await migrate(database.db);
  const daemon = await startDaemon({ config, logger, database });
  const app = await buildHttpServer({ daemon, logger });
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;

  const started = new Date();
  const seeded = await seedDemo(database.db, started);
  const payment = setTimeout(() => {
    // The billing system records a payment: the trigger NOTIFYs and the account resumes (R7).
    void database.db
      .execute(
        sql`update bills set paid_minor = amount_minor, status = 'paid' where id = 'demo-pays-b1'`,
      )
      .catch((err: unknown) => logger.error({ err }, 'demo payment failed'));
  }, PAYMENT_AFTER_MS);

  const base = `http://${config.host}:${port}`;
  process.stdout.write(
    [
      '',
      'overdue-worker demo is running.',
      `  console     ${base}/admin   user ${config.dashboard?.user ?? '-'}   password ${config.dashboard?.password ?? '-'}`,
      `              each account's story: ${base}/admin/accounts/<id>`,
      `  dashboard   ${base}/admin/queues (same credentials)`,
      `  API         ${base}/v1/openapi.json (same credentials)`,
      `  messages    ${path.join(config.dataDir, 'outbox')} (email .eml and SMS .json files)`,
      `  Redis       ${redisChild ? `private, ${config.redisUrl} (stopped with the demo)` : config.redisUrl}`,
      `  accounts    ${seeded.join(', ')}`,
      `  timeline    now: reminders, suspensions, studio suspended; +${PAYMENT_AFTER_MS / 1000}s: demo-pays pays and resumes;`,
      `              +${config.rules.studioReleaseDelayMs / 1000 - config.rules.studioReleaseWarningMs / 1000}s: studio release warning; +${config.rules.studioReleaseDelayMs / 1000}s: studio released`,
      '  Ctrl-C stops it.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'demo stopping');
    clearTimeout(payment);
    void (async () => {
      await app.close();
      await daemon.close();
      // The embedded database flushes to its folder on close; on a loaded machine this has been
      // seen to stall, and a demo's data is disposable, so it gets a bounded wait.
      const closed = await Promise.race([
        database.close().then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref()),
      ]);
      if (!closed) logger.warn('embedded database did not close within 10 s; exiting anyway');
      redisChild?.kill('SIGTERM');
      process.stdout.write('overdue-worker demo stopped.\n');
      process.exit(0);
    })().catch((err: unknown) => {
      process.stderr.write(`demo shutdown failed: ${String(err)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `overdue-worker demo failed: ${err instanceof Error ? err.stack : String(err)}\n`,
  );
  process.exit(1);
});
