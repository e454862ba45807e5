/**
 * The operator console's latency at fleet size: `npm run bench:console` (CONSOLE_ACCOUNTS,
 * default 1,000,000; CONSOLE_REQUESTS per page kind, default 300). One run:
 *
 * 1. generates the bench's fleet (generate.ts) in a fresh database and evaluates 2,000 of its
 *    overdue and low-balance accounts for real, so their account pages have a timeline (events,
 *    messages, effects);
 * 2. starts the daemon in this process without workers and with ENFORCEMENT_MODE=off (nothing
 *    evaluates or sends meanwhile) and its HTTP server on a loopback port;
 * 3. times, over real HTTP with Basic auth, one request at a time: the baseline (GET
 *    /v1/enforcement-mode: auth, one one-row query, JSON), the fleet overview, account search
 *    (exact id, id prefix, exact email, phone prefix) and account pages of random accounts.
 *
 * Prints p50/p95/max per kind, each p95 against the 100 ms goal and as a ratio to the baseline's
 * p95. The database is dropped at the end unless BENCH_KEEP_DB=1.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import pino from 'pino';
import postgres from 'postgres';
import { systemClock } from '../../src/adapters/clock/clock';
import { createDb } from '../../src/adapters/db/client';
import { evaluateBatch } from '../../src/adapters/db/evaluation';
import { migrate } from '../../src/adapters/db/migrate';
import { loadConfig } from '../../src/config';
import { startDaemon } from '../../src/daemon';
import { buildHttpServer } from '../../src/http/server';
import { deleteKeys } from '../support/daemon';
import { envNumber, log, percentile, REDIS_URL, round } from './common';
import { generate } from './generate';

const SERVER = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const N = envNumber('CONSOLE_ACCOUNTS', 1_000_000);
const REQUESTS = envNumber('CONSOLE_REQUESTS', 300);
const EVALUATED = Math.min(2_000, N);
const GOAL_MS = 100;
const USER = 'bench';
const PASSWORD = 'bench-password-123456';

function dbUrl(name: string): string {
  const url = new URL(SERVER);
  url.pathname = `/${name}`;
  return url.toString();
}

const pad = (i: number) => String(i).padStart(8, '0');
const pick = (n: number) => 1 + Math.floor(Math.random() * n);

async function main(): Promise<void> {
  const name = `ow_bench_console_${randomBytes(4).toString('hex')}`;
  const prefix = `{bench-console-${randomBytes(3).toString('hex')}}`;
  const admin = postgres(SERVER, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`create database "${name}"`);
  log(`database ${name}`);
  const redis = new Redis(REDIS_URL);
  const handle = await createDb(dbUrl(name), '/unused', { poolSize: 4 });
  let stop: (() => Promise<void>) | null = null;
  try {
    await migrate(handle.db);
    const t0 = performance.now();
    await generate(dbUrl(name), N);
    log(`generated ${N} accounts in ${round((performance.now() - t0) / 1000, 1)} s`);

    const loaded = loadConfig({
      DATABASE_URL: dbUrl(name),
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      ENFORCEMENT_MODE: 'off',
      SUSPENSION_BREAKER: 'off',
      SCAN_INTERVAL: '1h',
      PLAN_SCAN_INTERVAL: '1h',
      DASHBOARD_USER: USER,
      DASHBOARD_PASSWORD: PASSWORD,
      DB_POOL_SIZE: '8',
      LOG_LEVEL: 'warn',
    });
    if (!loaded.ok) throw new Error('bench configuration refused');
    const config = loaded.config;

    // Timelines: evaluate overdue and low-balance accounts for real (enforce, before the daemon).
    const sql = postgres(dbUrl(name), { max: 1, onnotice: () => undefined });
    const ids = (
      await sql<{ id: string }[]>`
        select a.id from accounts a
         where exists (select 1 from bills b where b.account_id = a.id and b.status = 'unpaid'
                         and b.due_at < now())
            or a.available_balance_minor < 10000
         order by a.id limit ${EVALUATED}`
    ).map((r) => r.id);
    await sql.end();
    const e0 = performance.now();
    for (let i = 0; i < ids.length; i += 200) {
      await evaluateBatch(
        handle.db,
        ids.slice(i, i + 200).map((accountId) => ({ accountId, actor: 'daemon' })),
        systemClock,
        config.rules,
        'wait',
      );
    }
    log(`evaluated ${ids.length} accounts in ${round((performance.now() - e0) / 1000, 1)} s`);

    const logger = pino({ level: 'warn' });
    // No workers: the effects and messages those evaluations queued stay queued, so nothing but
    // the measured requests runs while they are timed.
    const daemon = await startDaemon({ config, logger, sendNotifications: false, workers: false });
    const app = await buildHttpServer({ daemon, logger });
    await app.listen({ host: '127.0.0.1', port: 0 });
    stop = async () => {
      await app.close();
      await daemon.close();
    };
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const auth = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

    const time = async (kind: string, urls: () => string): Promise<number[]> => {
      const ms: number[] = [];
      for (let i = 0; i < REQUESTS + 20; i++) {
        const url = urls();
        const s = performance.now();
        const res = await fetch(`${base}${url}`, {
          headers: { authorization: auth, 'accept-language': 'en' },
        });
        await res.arrayBuffer();
        const took = performance.now() - s;
        if (res.status !== 200) throw new Error(`${kind}: ${url} answered ${res.status}`);
        if (i >= 20) ms.push(took); // the first 20 warm up connections and caches
      }
      return ms;
    };

    const evaluatedPick = () => ids[Math.floor(Math.random() * ids.length)] ?? 'acct-00000001';
    const kinds: [string, () => string][] = [
      ['baseline GET /v1/enforcement-mode', () => '/v1/enforcement-mode'],
      ['overview /admin', () => '/admin'],
      ['search: exact id', () => `/admin/accounts?q=acct-${pad(pick(N))}`],
      ['search: id prefix', () => `/admin/accounts?q=acct-${pad(pick(N)).slice(0, 6)}`],
      ['search: exact email', () => `/admin/accounts?q=u${pick(N)}%40example.com`],
      [
        'search: phone prefix',
        () => `/admin/accounts?q=%2B1415${String(pick(9999)).padStart(4, '0')}`,
      ],
      ['account page (random)', () => `/admin/accounts/acct-${pad(pick(N))}`],
      ['account page (evaluated)', () => `/admin/accounts/${evaluatedPick()}`],
    ];
    const rows: { kind: string; p50: number; p95: number; max: number }[] = [];
    for (const [kind, urls] of kinds) {
      const ms = await time(kind, urls);
      rows.push({
        kind,
        p50: round(percentile(ms, 50), 1),
        p95: round(percentile(ms, 95), 1),
        max: round(Math.max(...ms), 1),
      });
      log(`${kind}: p95 ${rows.at(-1)?.p95} ms`);
    }
    const baseline = rows[0]?.p95 ?? 1;
    const out = rows.map((r) => ({
      ...r,
      ratioToBaselineP95: round(r.p95 / baseline, 1),
      goalP95Ms: r.kind.startsWith('baseline') ? null : GOAL_MS,
      met: r.kind.startsWith('baseline') ? null : r.p95 < GOAL_MS,
    }));
    process.stdout.write(
      `${JSON.stringify({ accounts: N, requestsPerKind: REQUESTS, evaluated: ids.length, pages: out }, null, 2)}\n`,
    );
  } finally {
    await stop?.().catch(() => undefined);
    await handle.close();
    await deleteKeys(redis, prefix).catch(() => undefined);
    redis.disconnect();
    if (process.env.BENCH_KEEP_DB !== '1') {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
    }
    await admin.end();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`console bench failed: ${String(error)}\n`);
    process.exit(1);
  },
);
