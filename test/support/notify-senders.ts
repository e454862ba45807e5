import { Redis } from 'ioredis';
import { createNotifyPorts } from '../../src/adapters/notify/index';
import type { NotifyPorts } from '../../src/adapters/notify/ports';
import { loadConfig, type Config } from '../../src/config';
import type { Logger } from '../../src/logger';
import { TEST_REDIS_URL } from './daemon';
import { createTestDatabase, type TestDatabase } from './db';
import { createFakeTwilio, type FakeTwilio } from './fake-twilio';
import { createSmtpSink, type SmtpSink } from './smtp-sink';

/**
 * What the send-notification job needs, without a daemon: a fresh database, the SMTP sink and the
 * fake Twilio API on loopback, a config for both, the providers' ports and a BullMQ connection to
 * the shared Redis (the test's queues live under their own prefix).
 */
export interface NotifySenders {
  readonly t: TestDatabase;
  readonly sink: SmtpSink;
  readonly fake: FakeTwilio;
  readonly config: Config;
  readonly ports: NotifyPorts;
  readonly connection: Redis;
  /** A config for the same providers: the file's env with `env` on top. */
  configWith(env: Record<string, string>): Config;
  /** Disconnects Redis, closes the ports and the providers, drops the database. */
  close(): Promise<void>;
}

export const NOTIFY_FROM = 'Billing <billing@example.com>';

export async function startNotifySenders(
  env: Record<string, string>,
  options: { logger: Logger; parseMail?: boolean },
): Promise<NotifySenders> {
  const t = await createTestDatabase();
  const sink = await createSmtpSink({ parse: options.parseMail ?? true });
  const fake = await createFakeTwilio();
  const configWith = (extra: Record<string, string>): Config => {
    const result = loadConfig({
      SMTP_URL: sink.url,
      MAIL_FROM: NOTIFY_FROM,
      TWILIO_ACCOUNT_SID: fake.accountSid,
      TWILIO_AUTH_TOKEN: fake.authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_BASE_URL: fake.url,
      QUIET_HOURS: 'off',
      EMAIL_RATE_LIMIT: 'off',
      SMS_RATE_LIMIT: 'off',
      ...env,
      ...extra,
    });
    if (!result.ok) throw new Error(JSON.stringify(result.problems));
    return result.config;
  };
  const config = configWith({});
  const ports = createNotifyPorts(config, options.logger);
  const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  return {
    t,
    sink,
    fake,
    config,
    ports,
    connection,
    configWith,
    close: async () => {
      connection.disconnect();
      await ports.close();
      await sink.close();
      await fake.close();
      await t.drop();
    },
  };
}
