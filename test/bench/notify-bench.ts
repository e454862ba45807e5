/**
 * Notification dispatch benchmark. Part of `npm run bench` (test/bench/run.ts runs this file as a
 * child process with BENCH_NOTIFY_DB_URL and BENCH_PREFIX set, and reads the JSON line it prints
 * last); also runs on its own (not part of vitest):
 *
 *   npx tsx test/bench/notify-bench.ts            # 100,000 messages
 *   NOTIFY_BENCH_N=20000 npx tsx test/bench/notify-bench.ts
 *
 * Baseline: N no-op jobs through the same two queues (email, SMS), the same workers and
 * concurrency, no database and no provider: what BullMQ alone moves on this host.
 * Phase 1 sends N notifications, half email, half SMS, through the real send-notification
 * handler on real BullMQ workers (Redis), a PostgreSQL database, a real SMTP server on
 * loopback and the fake Twilio API driven through the twilio library, with rate limits off; each
 * sink runs in a process of its own (sink-child.ts).
 * It reports messages/s and the duplicates seen at the sinks (same Message-ID twice; same number
 * and body twice). Phase 2 sets a per-channel limit (NOTIFY_BENCH_RATE per second, default 200)
 * and measures the rate actually held (job starts ÷ (their span + one 1 s window), see below)
 * over NOTIFY_BENCH_SECONDS (default 10) of traffic; when
 * phase 1 did not reach 1.5× that limit per channel, the limit is lowered to half of phase 1's
 * per-channel rate so that the limiter, not the host, is what holds the rate.
 * NOTIFY_BENCH_CONCURRENCY (64 per channel), NOTIFY_BENCH_TIMEOUT_S (900, per phase).
 * Needs PostgreSQL and Redis as the integration tests do. On its own it creates (and drops) an
 * `ow_test_<hex>` database; under run.ts the database is the run's and run.ts drops it.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Queue, Worker, type Processor } from 'bullmq';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { createSendNotificationHandler } from '../../jobs/send-notification';
import {
  notifyBackoffStrategy,
  notifyJobOptions,
  notifyQueueNameFor,
  notifyWorkerLimiter,
} from '../../src/adapters/queue/notify-wiring';
import { systemClock } from '../../src/adapters/clock/clock';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';
import { createNotifyPorts } from '../../src/adapters/notify/index';
import { loadConfig, type Config } from '../../src/config';
import type { Channel } from '../../src/domain/snapshot';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../support/db';
import { deleteKeys } from '../support/daemon';
import { startSinkChild } from './sink-child';

export interface NotifyBenchOptions {
  /** A database to use (migrated here); none: a fresh `ow_test_<hex>`, dropped at the end. */
  readonly databaseUrl?: string;
  readonly redisUrl: string;
  readonly prefix: string;
  readonly n: number;
  readonly rate: number;
  readonly seconds: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
  readonly print: (line: string) => void;
}

export interface PhaseResult {
  total: number;
  email: number;
  sms: number;
  failed: number;
  seconds: number;
  perSecond: number;
  /** CPU (user + system) of this process, the sender, per message, ms. */
  cpuMsPerMessage: number;
}

export interface NotifyBenchResult {
  n: number;
  concurrencyPerChannel: number;
  noop: PhaseResult;
  unlimited: PhaseResult & {
    rowsSent: number;
    smtpAccepted: number;
    smtpDuplicates: number;
    smsStored: number;
    smsDuplicates: number;
  };
  limited: PhaseResult & {
    limitPerSecond: number;
    /** NOTIFY_BENCH_RATE; limitPerSecond is lower when the unlimited rate did not reach it. */
    requestedLimitPerSecond: number;
    channels: Record<Channel, { measuredPerSecond: number; starts: number; spanSeconds: number }>;
  };
  duplicates: { smtp: number; sms: number; total: number };
}

const ACCOUNTS = 1_000;

export async function runNotifyBench(o: NotifyBenchOptions): Promise<NotifyBenchResult> {
  const logger = createLogger('silent');
  let url: string;
  let raw: postgres.Sql;
  let drop: () => Promise<void>;
  if (o.databaseUrl !== undefined) {
    url = o.databaseUrl;
    const setup = await createDb(url, '/unused', { poolSize: 2 });
    await migrate(setup.db);
    await setup.close();
    const own = postgres(url, { max: 2, onnotice: () => undefined });
    raw = own;
    drop = () => own.end({ timeout: 5 });
  } else {
    const t = await createTestDatabase();
    url = t.url;
    raw = t.raw;
    drop = () => t.drop();
  }
  // Each sink in a process of its own (sink-child.ts): their work is not the sender's.
  const [sink, fake] = await Promise.all([startSinkChild('smtp'), startSinkChild('sms')]);
  const { accountSid = '', authToken = '' } = fake.ready;
  const handle = await createDb(url, '/unused', { poolSize: 40 });
  const connection = new Redis(o.redisUrl, { maxRetriesPerRequest: null });

  const configFor = (limits: { email: string; sms: string }): Config => {
    const r = loadConfig({
      SMTP_URL: sink.ready.url,
      MAIL_FROM: 'Billing <billing@example.com>',
      TWILIO_ACCOUNT_SID: accountSid,
      TWILIO_AUTH_TOKEN: authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_BASE_URL: fake.ready.url,
      QUIET_HOURS: 'off',
      NOTIFY_CONCURRENCY: String(o.concurrency),
      EMAIL_RATE_LIMIT: limits.email,
      SMS_RATE_LIMIT: limits.sms,
    });
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    return r.config;
  };

  // Accounts and notifications as the evaluation writes them, in bulk.
  await raw`
    insert into accounts (id, currency, email, phone, locale, time_zone)
    select 'acct-' || i, 'USD', 'owner' || i || '@example.com', '+1415' || lpad(i::text, 7, '0'),
           case when i % 2 = 0 then 'en' else 'zh-CN' end, 'Asia/Shanghai'
    from generate_series(1, ${ACCOUNTS}) i`;

  let batch = 0;
  async function insertBatch(count: number): Promise<string[]> {
    batch += 1;
    const tag = `b${batch}`;
    await raw`
      insert into notifications (dedupe_key, account_id, channel, template, locale, recipient, params)
      select 'bench-' || ${tag} || '-' || i || '-' || ch, 'acct-' || (1 + i % ${ACCOUNTS}), ch, 'suspended',
             case when i % 2 = 0 then 'en' else 'zh-CN' end,
             case when ch = 'email' then 'u' || ${tag} || '-' || i || '@example.com'
                  else '+1' || lpad((${batch * 10_000_000} + i)::text, 10, '0') end,
             jsonb_build_object('currency', 'USD', 'overdueMinor', 5000 + i, 'products', jsonb_build_array('live'),
                                'otherProducts', jsonb_build_array(), 'limit', 'amount')
      from generate_series(1, ${count}) i,
           lateral (select case when i % 2 = 0 then 'email' else 'sms' end as ch) c`;
    await raw`
      insert into outbox (idempotency_key, kind, account_id, payload, status)
      select dedupe_key, 'notify', account_id, jsonb_build_object('notificationId', id, 'channel', channel), 'dispatched'
      from notifications where dedupe_key like ${`bench-${tag}-%`}`;
    return (
      await raw<{ dedupe_key: string }[]>`
        select dedupe_key from notifications where dedupe_key like ${`bench-${tag}-%`} order by id`
    ).map((r) => r.dedupe_key);
  }

  /** Sends `keys` (`…-email` / `…-sms`) through one queue and worker per channel. */
  async function run(
    label: string,
    keys: readonly string[],
    config: Config,
    handler: Processor,
  ): Promise<{ started: Record<Channel, number[]>; result: PhaseResult }> {
    const queues = new Map<Channel, Queue>();
    const finished: Record<Channel, number[]> = { email: [], sms: [] };
    const started: Record<Channel, number[]> = { email: [], sms: [] };
    let failed = 0;
    for (const channel of ['email', 'sms'] as const) {
      const name = `${notifyQueueNameFor(channel)}-${label}`;
      const queue = new Queue(name, { connection, prefix: o.prefix });
      queues.set(channel, queue);
      const own = keys.filter((k) => k.endsWith(`-${channel}`));
      for (let i = 0; i < own.length; i += 2_000) {
        await queue.addBulk(
          own.slice(i, i + 2_000).map((key) => ({
            name: 'send-notification',
            data: { outboxKey: key },
            opts: {
              ...notifyJobOptions(),
              jobId: key,
              removeOnComplete: true,
              removeOnFail: 1_000,
            },
          })),
        );
      }
    }
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const workers = (['email', 'sms'] as const).map((channel) => {
      const limiter = notifyWorkerLimiter(config, channel);
      const worker = new Worker(`${notifyQueueNameFor(channel)}-${label}`, handler, {
        connection,
        prefix: o.prefix,
        concurrency: config.notify.concurrency,
        settings: { backoffStrategy: notifyBackoffStrategy },
        ...(limiter === undefined ? {} : { limiter }),
      });
      worker.on('active', () => started[channel].push(performance.now()));
      worker.on('completed', () => finished[channel].push(performance.now()));
      worker.on('failed', () => {
        failed += 1;
      });
      worker.on('error', () => undefined);
      return worker;
    });
    const total = keys.length;
    const until = Date.now() + o.timeoutMs;
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (finished.email.length + finished.sms.length + failed >= total) {
          clearInterval(timer);
          resolve();
        } else if (Date.now() > until) {
          clearInterval(timer);
          reject(new Error(`notify bench ${label}: timed out after ${o.timeoutMs} ms`));
        }
      }, 50);
    });
    const seconds = (performance.now() - t0) / 1_000;
    const cpu = process.cpuUsage(cpu0);
    await Promise.all(workers.map((w) => w.close()));
    for (const q of queues.values()) {
      await q.obliterate({ force: true });
      await q.close();
    }
    const result: PhaseResult = {
      total,
      email: finished.email.length,
      sms: finished.sms.length,
      failed,
      seconds: Math.round(seconds * 100) / 100,
      perSecond: Math.round(total / seconds),
      cpuMsPerMessage: Math.round((cpu.user + cpu.system) / 10 / total) / 100,
    };
    o.print(
      `${label}: ${total} messages (${result.email} email, ${result.sms} SMS, ${failed} failed) in ${seconds.toFixed(2)} s = ${result.perSecond} messages/s, sender CPU ${result.cpuMsPerMessage} ms/message`,
    );
    return { started, result };
  }

  const sendWith = (config: Config) => {
    const ports = createNotifyPorts(config, logger);
    const handler = createSendNotificationHandler({
      db: handle.db,
      config,
      logger,
      clock: systemClock,
      ports,
      requestRelay: () => undefined,
    });
    return { handler, close: () => ports.close() };
  };

  try {
    o.print(`notify bench: N=${o.n}, concurrency ${o.concurrency} per channel`);
    // Baseline: the same queues, workers and concurrency, a handler that does nothing.
    const noopKeys = Array.from(
      { length: o.n },
      (_, i) => `noop-${i}-${i % 2 === 0 ? 'email' : 'sms'}`,
    );
    const noop = await run('noop', noopKeys, configFor({ email: 'off', sms: 'off' }), () =>
      Promise.resolve(),
    );

    const keys = await insertBatch(o.n);
    const unlimitedConfig = configFor({ email: 'off', sms: 'off' });
    const unlimitedSend = sendWith(unlimitedConfig);
    const unlimited = await run('unlimited', keys, unlimitedConfig, unlimitedSend.handler);
    await unlimitedSend.close();
    const sent = await raw<{ n: string }[]>`
      select count(*)::text as n from notifications where status = 'sent' and dedupe_key like 'bench-b1-%'`;
    const [smtpStats, smsStats] = await Promise.all([sink.stats(), fake.stats()]);
    const afterUnlimited = {
      rowsSent: Number(sent[0]?.n ?? 0),
      smtpAccepted: smtpStats.accepted,
      smtpDuplicates: smtpStats.duplicates,
      smsStored: smsStats.accepted,
      smsDuplicates: smsStats.duplicates,
    };
    o.print(
      `  rows sent: ${afterUnlimited.rowsSent}; SMTP sink accepted ${afterUnlimited.smtpAccepted}, duplicate Message-IDs ${afterUnlimited.smtpDuplicates}; ` +
        `fake SMS API stored ${afterUnlimited.smsStored}, duplicates ${afterUnlimited.smsDuplicates}`,
    );

    // Phase 2: a per-channel limit of RATE/s over SECONDS seconds of traffic per channel. A
    // limit the unlimited phase did not reach per channel tests nothing: then it is lowered to
    // half of that rate, so that the limiter is what holds the rate back.
    const unlimitedPerChannel = unlimited.result.perSecond / 2;
    const rate =
      o.rate * 1.5 <= unlimitedPerChannel
        ? o.rate
        : Math.max(1, Math.floor(unlimitedPerChannel / 2));
    if (rate !== o.rate) {
      o.print(
        `  limit lowered from ${o.rate}/s to ${rate}/s per channel: the unlimited phase sent ${unlimitedPerChannel}/s per channel`,
      );
    }
    const limitedKeys = await insertBatch(rate * o.seconds * 2);
    const limitedConfig = configFor({ email: String(rate), sms: String(rate) });
    const limitedSend = sendWith(limitedConfig);
    const limited = await run('limited', limitedKeys, limitedConfig, limitedSend.handler);
    await limitedSend.close();
    const channels = {} as NotifyBenchResult['limited']['channels'];
    for (const channel of ['email', 'sms'] as const) {
      // BullMQ's limiter admits RATE job starts per window of 1 s, the first window opening at
      // the first start and each next one at the first start after the previous one closed. So
      // starts spanning S seconds fall in at most S + 1 windows: the limit held if
      // starts / (S + 1) <= RATE. (Counting completions over whole seconds from the first one
      // instead counts one burst too many: +1/S over the limit with a limiter that holds.)
      const starts = limited.started[channel];
      const span = ((starts[starts.length - 1] ?? 0) - (starts[0] ?? 0)) / 1_000;
      const measured = starts.length / (span + 1);
      channels[channel] = {
        measuredPerSecond: Math.round(measured * 10) / 10,
        starts: starts.length,
        spanSeconds: Math.round(span * 100) / 100,
      };
      o.print(
        `  ${channel}: limit ${rate}/s, measured ${measured.toFixed(1)}/s (${starts.length} starts over ${span.toFixed(2)} s + 1 window; ${((100 * (measured - rate)) / rate).toFixed(1)} %)`,
      );
    }
    const [smtpEnd, smsEnd] = await Promise.all([sink.stats(), fake.stats()]);
    const duplicates = {
      smtp: smtpEnd.duplicates,
      sms: smsEnd.duplicates,
      total: smtpEnd.duplicates + smsEnd.duplicates,
    };
    o.print(`  totals: SMTP duplicates ${duplicates.smtp}, SMS duplicates ${duplicates.sms}`);
    return {
      n: o.n,
      concurrencyPerChannel: o.concurrency,
      noop: noop.result,
      unlimited: { ...unlimited.result, ...afterUnlimited },
      limited: {
        ...limited.result,
        limitPerSecond: rate,
        requestedLimitPerSecond: o.rate,
        channels,
      },
      duplicates,
    };
  } finally {
    await deleteKeys(connection, o.prefix).catch(() => undefined);
    connection.disconnect();
    await handle.close();
    await sink.close();
    await fake.close();
    await drop();
  }
}

async function main(): Promise<void> {
  const underRun = process.env.BENCH_NOTIFY_DB_URL !== undefined;
  const result = await runNotifyBench({
    ...(underRun ? { databaseUrl: process.env.BENCH_NOTIFY_DB_URL } : {}),
    redisUrl: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    prefix: process.env.BENCH_PREFIX ?? `{bench-${randomBytes(4).toString('hex')}}`,
    n: Number(process.env.NOTIFY_BENCH_N ?? '100000'),
    rate: Number(process.env.NOTIFY_BENCH_RATE ?? '200'),
    seconds: Number(process.env.NOTIFY_BENCH_SECONDS ?? '10'),
    concurrency: Number(process.env.NOTIFY_BENCH_CONCURRENCY ?? '64'),
    timeoutMs: Number(process.env.NOTIFY_BENCH_TIMEOUT_S ?? '900') * 1_000,
    // Under run.ts stdout carries the JSON result only.
    print: underRun ? (line) => process.stderr.write(`[notify] ${line}\n`) : console.log,
  });
  if (underRun) process.stdout.write(`${JSON.stringify(result)}\n`);
}

// Only as a script: run.ts imports this module's types, never the module.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
