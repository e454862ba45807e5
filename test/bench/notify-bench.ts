/**
 * Notification dispatch benchmark (not part of vitest):
 *
 *   npx tsx test/bench/notify-bench.ts            # 100,000 messages
 *   NOTIFY_BENCH_N=20000 npx tsx test/bench/notify-bench.ts
 *
 * Phase 1 sends N notifications, half email, half SMS, through the real send-notification
 * handler on real BullMQ workers (Redis), a fresh PostgreSQL database, a real SMTP server on
 * loopback and the fake Twilio API driven through the twilio library, with rate limits off.
 * It prints messages/s and the duplicates seen at the sinks (same Message-ID twice; same number
 * and body twice). Phase 2 sets a per-channel limit (NOTIFY_BENCH_RATE per second, default 200)
 * and measures the rate actually held over NOTIFY_BENCH_SECONDS (default 10) of traffic.
 * Needs PostgreSQL and Redis as the integration tests do.
 */
import { randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import {
  createSendNotificationHandler,
  notifyBackoffStrategy,
  notifyJobOptions,
  notifyQueueNameFor,
  notifyWorkerLimiter,
} from '../../jobs/send-notification';
import { systemClock } from '../../src/adapters/clock/clock';
import { createDb } from '../../src/adapters/db/client';
import { createNotifyPorts } from '../../src/adapters/notify/index';
import { loadConfig, type Config } from '../../src/config';
import type { Channel } from '../../src/domain/snapshot';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../support/db';
import { createFakeTwilio } from '../support/fake-twilio';
import { createSmtpSink } from '../support/smtp-sink';

const N = Number(process.env.NOTIFY_BENCH_N ?? '100000');
const RATE = Number(process.env.NOTIFY_BENCH_RATE ?? '200');
const SECONDS = Number(process.env.NOTIFY_BENCH_SECONDS ?? '10');
const CONCURRENCY = Number(process.env.NOTIFY_BENCH_CONCURRENCY ?? '64');
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ACCOUNTS = 1_000;

const logger = createLogger('silent');

async function main(): Promise<void> {
  const t = await createTestDatabase();
  const sink = await createSmtpSink({ parse: false });
  const fake = await createFakeTwilio();
  const handle = await createDb(t.url, '/unused', { poolSize: 40 });
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const prefix = `{bench-${randomBytes(4).toString('hex')}}`;

  const configFor = (limits: { email: string; sms: string }): Config => {
    const r = loadConfig({
      SMTP_URL: sink.url,
      MAIL_FROM: 'Billing <billing@example.com>',
      TWILIO_ACCOUNT_SID: fake.accountSid,
      TWILIO_AUTH_TOKEN: fake.authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_BASE_URL: fake.url,
      QUIET_HOURS: 'off',
      NOTIFY_CONCURRENCY: String(CONCURRENCY),
      EMAIL_RATE_LIMIT: limits.email,
      SMS_RATE_LIMIT: limits.sms,
    });
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    return r.config;
  };

  // Accounts and notifications as the evaluation writes them, in bulk.
  await t.raw`
    insert into accounts (id, currency, email, phone, locale, time_zone)
    select 'acct-' || i, 'USD', 'owner' || i || '@example.com', '+1415' || lpad(i::text, 7, '0'),
           case when i % 2 = 0 then 'en' else 'zh-CN' end, 'Asia/Shanghai'
    from generate_series(1, ${ACCOUNTS}) i`;

  let batch = 0;
  async function insertBatch(count: number): Promise<string[]> {
    batch += 1;
    const tag = `b${batch}`;
    await t.raw`
      insert into notifications (dedupe_key, account_id, channel, template, locale, recipient, params)
      select 'bench-' || ${tag} || '-' || i || '-' || ch, 'acct-' || (1 + i % ${ACCOUNTS}), ch, 'suspended',
             case when i % 2 = 0 then 'en' else 'zh-CN' end,
             case when ch = 'email' then 'u' || ${tag} || '-' || i || '@example.com'
                  else '+1' || lpad((${batch * 10_000_000} + i)::text, 10, '0') end,
             jsonb_build_object('currency', 'USD', 'overdueMinor', 5000 + i, 'products', jsonb_build_array('live'),
                                'otherProducts', jsonb_build_array(), 'limit', 'amount')
      from generate_series(1, ${count}) i,
           lateral (select case when i % 2 = 0 then 'email' else 'sms' end as ch) c`;
    await t.raw`
      insert into outbox (idempotency_key, kind, account_id, payload, status)
      select dedupe_key, 'notify', account_id, jsonb_build_object('notificationId', id, 'channel', channel), 'dispatched'
      from notifications where dedupe_key like ${`bench-${tag}-%`}`;
    return (
      await t.raw<{ dedupe_key: string }[]>`
        select dedupe_key from notifications where dedupe_key like ${`bench-${tag}-%`} order by id`
    ).map((r) => r.dedupe_key);
  }

  async function run(
    label: string,
    keys: readonly string[],
    config: Config,
  ): Promise<Record<Channel, number[]>> {
    const ports = createNotifyPorts(config, logger);
    const handler = createSendNotificationHandler({
      db: handle.db,
      config,
      logger,
      clock: systemClock,
      ports,
      requestRelay: () => undefined,
    });
    const queues = new Map<Channel, Queue>();
    const finished: Record<Channel, number[]> = { email: [], sms: [] };
    let failed = 0;
    for (const channel of ['email', 'sms'] as const) {
      const name = `${notifyQueueNameFor(channel)}-${label}`;
      const queue = new Queue(name, { connection, prefix });
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
    const started = performance.now();
    const workers = (['email', 'sms'] as const).map((channel) => {
      const limiter = notifyWorkerLimiter(config, channel);
      const worker = new Worker(`${notifyQueueNameFor(channel)}-${label}`, handler, {
        connection,
        prefix,
        concurrency: config.notify.concurrency,
        settings: { backoffStrategy: notifyBackoffStrategy },
        ...(limiter === undefined ? {} : { limiter }),
      });
      worker.on('completed', () => finished[channel].push(performance.now()));
      worker.on('failed', () => {
        failed += 1;
      });
      return worker;
    });
    const total = keys.length;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (finished.email.length + finished.sms.length + failed >= total) {
          clearInterval(timer);
          resolve();
        }
      }, 50);
    });
    const seconds = (performance.now() - started) / 1_000;
    await Promise.all(workers.map((w) => w.close()));
    for (const q of queues.values()) {
      await q.obliterate({ force: true });
      await q.close();
    }
    await ports.close();
    console.log(
      `${label}: ${total} messages (${finished.email.length} email, ${finished.sms.length} SMS, ${failed} failed) in ${seconds.toFixed(2)} s = ${(total / seconds).toFixed(0)} messages/s`,
    );
    return finished;
  }

  try {
    console.log(`notify bench: N=${N}, concurrency ${CONCURRENCY} per channel`);
    const keys = await insertBatch(N);
    await run('unlimited', keys, configFor({ email: 'off', sms: 'off' }));
    const sent = await t.raw<{ n: string }[]>`
      select count(*)::text as n from notifications where status = 'sent' and dedupe_key like 'bench-b1-%'`;
    console.log(
      `  rows sent: ${sent[0]?.n}; SMTP sink accepted ${sink.accepted()}, duplicate Message-IDs ${sink.duplicates()}; ` +
        `fake SMS API stored ${fake.messages.length}, duplicates ${fake.duplicates()}`,
    );

    // Phase 2: a per-channel limit of RATE/s over SECONDS seconds of traffic per channel.
    const limitedKeys = await insertBatch(RATE * SECONDS * 2);
    const finished = await run(
      'limited',
      limitedKeys,
      configFor({ email: String(RATE), sms: String(RATE) }),
    );
    for (const channel of ['email', 'sms'] as const) {
      const times = finished[channel];
      const first = times[0] ?? 0;
      // The limiter admits RATE jobs per 1 s window starting with the first: count whole
      // seconds from the first completion (the last, partial second would flatter the rate).
      const whole = Math.max(1, Math.floor(((times[times.length - 1] ?? 0) - first) / 1_000));
      const inWindow = times.filter((at) => at < first + whole * 1_000).length;
      const rate = inWindow / whole;
      console.log(
        `  ${channel}: limit ${RATE}/s, measured ${rate.toFixed(1)}/s over ${whole} s (${((100 * (rate - RATE)) / RATE).toFixed(1)} %)`,
      );
    }
    console.log(
      `  totals: SMTP duplicates ${sink.duplicates()}, SMS duplicates ${fake.duplicates()}`,
    );
  } finally {
    connection.disconnect();
    await handle.close();
    await sink.close();
    await fake.close();
    await t.drop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
