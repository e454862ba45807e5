import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Job } from 'bullmq';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSendNotificationHandler } from '../../jobs/send-notification';
import { systemClock } from '../../src/adapters/clock/clock';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { insertNotification, insertOutbox } from '../../src/adapters/db/daemon-writers';
import { notifications, outbox } from '../../src/adapters/db/schema';
import { createNotifyPorts } from '../../src/adapters/notify/index';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { createFakeTwilio, type FakeTwilio } from '../support/fake-twilio';

/**
 * A worker process killed with SIGKILL after the provider accepted an SMS but before the row
 * was updated: the retry (here, in this process) must find the message at the provider and
 * record it, not send a second one.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEY = 'susp-v1-acct-k-1-sms';

let t: TestDatabase;
let fake: FakeTwilio;

function env(): Record<string, string> {
  return {
    TWILIO_ACCOUNT_SID: fake.accountSid,
    TWILIO_AUTH_TOKEN: fake.authToken,
    TWILIO_FROM: '+15005550006',
    TWILIO_API_BASE_URL: fake.url,
    QUIET_HOURS: 'off',
    NOTIFY_TIMEOUT: '30s',
  };
}

/** The handler in a child process (tsx), for one job on KEY. */
const CHILD = `
import { createSendNotificationHandler } from './jobs/send-notification';
import { systemClock } from './src/adapters/clock/clock';
import { createDb } from './src/adapters/db/client';
import { createNotifyPorts } from './src/adapters/notify/index';
import { loadConfig } from './src/config';
import { createLogger } from './src/logger';
const r = loadConfig(process.env);
if (!r.ok) throw new Error('config');
const logger = createLogger('silent');
const handle = await createDb(process.env.CRASH_DB_URL ?? '', '/unused');
const handler = createSendNotificationHandler({
  db: handle.db, config: r.config, logger, clock: systemClock,
  ports: createNotifyPorts(r.config, logger), requestRelay: () => undefined,
});
await handler({ id: 'crash', data: { outboxKey: process.env.CRASH_KEY }, attemptsMade: 0, opts: { attempts: 5 } });
process.stdout.write('handler returned\\n');
process.exit(0);
`;

beforeAll(async () => {
  t = await createTestDatabase();
  fake = await createFakeTwilio();
  await upsertAccount(t.db, { id: 'acct-k', currency: 'USD', phone: '+14155550199' });
  await t.db.transaction(async (tx) => {
    await insertNotification(tx, {
      dedupeKey: KEY,
      accountId: 'acct-k',
      channel: 'sms',
      template: 'resumed',
      locale: 'en',
      recipient: '+14155550199',
      params: { currency: 'USD', resumed: 2, stillHeldByOperator: 0 },
    });
    await insertOutbox(tx, {
      idempotencyKey: KEY,
      kind: 'notify',
      accountId: 'acct-k',
      payload: { channel: 'sms' },
    });
  });
});

afterAll(async () => {
  await fake.close();
  await t.drop();
});

describe('kill -9 between the provider call and the row update', () => {
  it('the retry reconciles with the provider and nothing is sent twice', async () => {
    let child: ChildProcess | undefined;
    const killed = new Promise<NodeJS.Signals | null>((resolve) => {
      fake.script({
        kind: 'accept-then-call',
        onAccepted: () => {
          child?.kill('SIGKILL');
        },
      });
      child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
        cwd: ROOT,
        env: { ...process.env, ...env(), CRASH_DB_URL: t.url, CRASH_KEY: KEY },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.on('exit', (_code, signal) => resolve(signal));
    });
    expect(await killed).toBe('SIGKILL');
    expect(fake.messages).toHaveLength(1);
    const [mid] = await t.db.select().from(notifications).where(eq(notifications.dedupeKey, KEY));
    expect(mid?.status).toBe('sending');
    expect(mid?.messageId).toBeNull();

    // The retry, as BullMQ would run it after the stalled job is picked up again.
    const r = loadConfig(env());
    if (!r.ok) throw new Error('config');
    const logger = createLogger('silent');
    const ports = createNotifyPorts(r.config, logger);
    const handler = createSendNotificationHandler({
      db: t.db,
      config: r.config,
      logger,
      clock: systemClock,
      ports,
      requestRelay: () => undefined,
    });
    const job = { id: 'retry', data: { outboxKey: KEY }, attemptsMade: 1, opts: { attempts: 5 } };
    // The dead holder's lease still runs: nobody may send yet.
    expect(mid?.claimExpiresAt?.getTime()).toBeGreaterThan(Date.now());
    await expect(handler(job as unknown as Job)).rejects.toThrow(/held by another attempt/);
    // Time passes (the lease is NOTIFY_TIMEOUT + 20 s); then the retry takes over.
    await t.raw`update notifications set claim_expires_at = now() - interval '1 second'
                 where dedupe_key = ${KEY}`;
    await handler(job as unknown as Job);
    await ports.close();

    expect(fake.messages).toHaveLength(1);
    expect(fake.createRequests()).toBe(1);
    const [after] = await t.db.select().from(notifications).where(eq(notifications.dedupeKey, KEY));
    expect(after?.status).toBe('sent');
    expect(after?.messageId).toBe(fake.messages[0]?.sid);
    expect(after?.attempts).toBe(2);
    const [ob] = await t.db.select().from(outbox).where(eq(outbox.idempotencyKey, KEY));
    expect(ob?.status).toBe('done');
  });
});
