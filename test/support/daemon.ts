import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { loadConfig, type Config } from '../../src/config';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon';
import { createTestDatabase, type TestDatabase } from './db';
import { startFakeControlPlane, type FakeControlPlane } from './control-plane-server';
import { createFakeTwilio, type FakeTwilio } from './fake-twilio';
import { createSmtpSink, type SmtpSink } from './smtp-sink';

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A unique, hash-tagged queue prefix so test files never share Redis keys. */
export function testPrefix(): string {
  return `{ow-test-${randomBytes(5).toString('hex')}}`;
}

export function testConfig(env: Record<string, string>): Config {
  const result = loadConfig({
    REDIS_URL: TEST_REDIS_URL,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SCAN_INTERVAL: '1h',
    PLAN_SCAN_INTERVAL: '1h',
    OUTBOX_POLL_INTERVAL: '200ms',
    QUIET_HOURS: 'off',
    ...env,
  });
  if (!result.ok) throw new Error(`bad test config: ${JSON.stringify(result.problems)}`);
  return result.config;
}

export interface Harness {
  readonly t: TestDatabase;
  readonly cp: FakeControlPlane;
  readonly config: Config;
  readonly prefix: string;
  readonly redis: Redis;
  daemon: Daemon;
  start(extra?: Partial<DaemonOptions>): Promise<Daemon>;
  /** Deletes the test's Redis keys, closes everything, drops the database. */
  stop(): Promise<void>;
}

/** A database, a fake control plane and a daemon configured for both, on a private prefix. */
export async function startHarness(
  env: Record<string, string> = {},
  options: Partial<DaemonOptions> = {},
): Promise<Harness> {
  const t = await createTestDatabase();
  const cp = await startFakeControlPlane();
  const prefix = testPrefix();
  const config = testConfig({
    DATABASE_URL: t.url,
    QUEUE_PREFIX: prefix,
    CONTROL_PLANE_URL: cp.url,
    CONTROL_PLANE_SECRET: cp.secret,
    ...env,
  });
  const redis = new Redis(TEST_REDIS_URL);
  const logger = pino({ level: config.logLevel });
  const h: Harness = {
    t,
    cp,
    config,
    prefix,
    redis,
    daemon: undefined as unknown as Daemon,
    start: async (extra = {}) =>
      startDaemon({
        config,
        logger,
        database: t.handle,
        sendNotifications: false,
        ...options,
        ...extra,
      }),
    stop: async () => {
      await h.daemon?.close().catch(() => undefined);
      await deleteKeys(redis, prefix);
      redis.disconnect();
      await cp.close();
      await t.drop();
    },
  };
  h.daemon = await h.start();
  return h;
}

/** A harness whose daemon sends its notices: to `sink` by SMTP and to `twilio` as SMS. */
export interface NotifyHarness extends Harness {
  /** The SMTP server on loopback the daemon mails to (messages parsed). */
  readonly sink: SmtpSink;
  /** The fake Twilio API on loopback the daemon sends SMS through. */
  readonly twilio: FakeTwilio;
}

/**
 * `startHarness` with notifications on: an SMTP sink and a fake Twilio API on loopback, the
 * daemon configured for both (no rate limits) and sending. `env` and `options` add to that or
 * override it; `stop` closes the daemon's harness, then the sink, then the SMS API.
 */
export async function startNotifyHarness(
  env: Record<string, string> = {},
  options: Partial<DaemonOptions> = {},
): Promise<NotifyHarness> {
  const sink = await createSmtpSink();
  const twilio = await createFakeTwilio();
  const closeProviders = async () => {
    await sink.close();
    await twilio.close();
  };
  let h: Harness;
  try {
    h = await startHarness(
      {
        SMTP_URL: sink.url,
        MAIL_FROM: 'Billing <billing@example.com>',
        TWILIO_ACCOUNT_SID: twilio.accountSid,
        TWILIO_AUTH_TOKEN: twilio.authToken,
        TWILIO_FROM: '+15005550006',
        TWILIO_API_BASE_URL: twilio.url,
        EMAIL_RATE_LIMIT: 'off',
        SMS_RATE_LIMIT: 'off',
        ...env,
      },
      { sendNotifications: true, ...options },
    );
  } catch (error) {
    await closeProviders();
    throw error;
  }
  const stopHarness = h.stop.bind(h);
  return Object.assign(h, {
    sink,
    twilio,
    stop: async () => {
      await stopHarness();
      await closeProviders();
    },
  });
}

export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then throws). */
export async function waitFor<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
