import { randomBytes, randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { eq, inArray, sql } from 'drizzle-orm';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSendNotificationHandler } from '../../jobs/send-notification';
import { systemClock } from '../../src/adapters/clock/clock';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { insertNotification, insertOutbox } from '../../src/adapters/db/daemon-writers';
import { claimNotifications, markSentMany } from '../../src/adapters/db/notification-store';
import { notifications, outbox } from '../../src/adapters/db/schema';
import type { NotifyPorts } from '../../src/adapters/notify/ports';
import {
  notifyBackoffStrategy,
  notifyJobOptions,
  notifyQueueNameFor,
  notifyWorkerLimiter,
} from '../../src/adapters/queue/notify-wiring';
import type { Config } from '../../src/config';
import type { Channel } from '../../src/domain/snapshot';
import { createLogger } from '../../src/logger';
import { TEST_REDIS_URL } from '../support/daemon';
import type { TestDatabase } from '../support/db';
import type { FakeTwilio } from '../support/fake-twilio';
import { startNotifySenders, type NotifySenders } from '../support/notify-senders';
import type { SmtpSink } from '../support/smtp-sink';

/**
 * Concurrent sends share their statements (src/adapters/db/notification-batches.ts): a burst of
 * messages through real BullMQ workers, the SMTP server and the fake Twilio API on loopback, a
 * fresh PostgreSQL database. Each message reaches its provider once and its row records that
 * provider's id; the batched claim takes a row once however often it is asked in one statement;
 * an attempt whose lease was taken over records nothing.
 */

const logger = createLogger('silent');
const prefix = `{test-${randomBytes(4).toString('hex')}}`;
const PARAMS = {
  currency: 'USD',
  overdueMinor: 5000,
  limit: 'amount',
  products: ['live'],
  otherProducts: [],
};

let senders: NotifySenders;
let t: TestDatabase;
let sink: SmtpSink;
let fake: FakeTwilio;
let config: Config;
let ports: NotifyPorts;
let connection: Redis;
let accountsMade = 0;

/** One account per message (its own address and number), the rows as the evaluation writes them. */
async function insertMessages(tag: string, count: number, channel: Channel): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const accountId = `acct-${tag}-${i}`;
    accountsMade += 1;
    const phone = `+1415${5_550_000 + accountsMade}`;
    const email = `owner-${tag}-${i}@example.com`;
    await upsertAccount(t.db, { id: accountId, currency: 'USD', email, phone });
    const key = `suspended-v1-${accountId}-1-${channel}`;
    await t.db.transaction(async (tx) => {
      await insertNotification(tx, {
        dedupeKey: key,
        accountId,
        channel,
        template: 'suspended',
        locale: 'en',
        recipient: channel === 'email' ? email : phone,
        params: PARAMS,
      });
      await insertOutbox(tx, {
        idempotencyKey: key,
        kind: 'notify',
        accountId,
        payload: { channel },
      });
    });
    keys.push(key);
  }
  // As the relay leaves them once their jobs are queued.
  await t.db
    .update(outbox)
    .set({ status: 'dispatched' })
    .where(inArray(outbox.idempotencyKey, keys));
  return keys;
}

/** A send-notification handler on this file's database and ports (no relay to wake). */
function sendHandler(withConfig: Config) {
  return createSendNotificationHandler({
    db: t.db,
    config: withConfig,
    logger,
    clock: systemClock,
    ports,
    requestRelay: () => undefined,
  });
}

async function rowOf(key: string) {
  const [r] = await t.db.select().from(notifications).where(eq(notifications.dedupeKey, key));
  if (r === undefined) throw new Error(`no notification ${key}`);
  return r;
}

async function outboxStatus(key: string): Promise<string | undefined> {
  const [r] = await t.db
    .select({ status: outbox.status })
    .from(outbox)
    .where(eq(outbox.idempotencyKey, key));
  return r?.status;
}

beforeAll(async () => {
  senders = await startNotifySenders(
    { NOTIFY_TIMEOUT: '5s', NOTIFY_CONCURRENCY: '16' },
    { logger, parseMail: false },
  );
  ({ t, sink, fake, config, ports, connection } = senders);
});

afterAll(async () => {
  await senders?.close();
});

describe('concurrent sends sharing statements', () => {
  it('sends each message of a burst once and records each sent with its provider id', async () => {
    const perChannel = 40;
    const keys = {
      email: await insertMessages('burst', perChannel, 'email'),
      sms: await insertMessages('burst', perChannel, 'sms'),
    };
    const handler = sendHandler(config);
    const done = { completed: 0, failed: 0 };
    const queues: Queue[] = [];
    const workers: Worker[] = [];
    for (const channel of ['email', 'sms'] as const) {
      const name = `${notifyQueueNameFor(channel)}-burst`;
      const queue = new Queue(name, { connection, prefix });
      queues.push(queue);
      await queue.addBulk(
        keys[channel].map((key) => ({
          name: 'send-notification',
          data: { outboxKey: key },
          opts: { ...notifyJobOptions(), jobId: key },
        })),
      );
      const worker = new Worker(name, handler, {
        connection,
        prefix,
        concurrency: config.notify.concurrency,
        settings: { backoffStrategy: notifyBackoffStrategy },
      });
      worker.on('completed', () => (done.completed += 1));
      worker.on('failed', () => (done.failed += 1));
      workers.push(worker);
    }
    try {
      const deadline = Date.now() + 30_000;
      while (done.completed + done.failed < 2 * perChannel && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await Promise.all(workers.map((w) => w.close()));
      for (const q of queues) {
        await q.obliterate({ force: true });
        await q.close();
      }
    }
    expect(done).toEqual({ completed: 2 * perChannel, failed: 0 });

    // Email: one transaction per message at the SMTP server, under the key's Message-ID.
    expect(sink.accepted()).toBe(perChannel);
    expect(sink.duplicates()).toBe(0);
    for (const key of keys.email) {
      const r = await rowOf(key);
      expect(r).toMatchObject({ status: 'sent', providerId: 'smtp', attempts: 1 });
      expect(r.messageId).toBe(`<${key}@example.com>`);
      expect(sink.byMessageId.get(r.messageId ?? '')).toBe(1);
      expect(await outboxStatus(key)).toBe('done');
    }
    // SMS: one message per number at the API, and each row carries the SID the API gave it.
    expect(fake.messages).toHaveLength(perChannel);
    expect(fake.duplicates()).toBe(0);
    const bySid = new Map(fake.messages.map((m) => [m.sid, m]));
    for (const key of keys.sms) {
      const r = await rowOf(key);
      expect(r).toMatchObject({ status: 'sent', providerId: 'twilio', attempts: 1 });
      expect(bySid.get(r.messageId ?? '')?.to).toBe(r.recipient);
      expect(await outboxStatus(key)).toBe('done');
    }
  });

  it('claims a row once when one statement asks for it twice, and tells each caller', async () => {
    const [free, busy, finished] = await insertMessages('claim', 3, 'email');
    const ids = await Promise.all(
      [free, busy, finished].map(async (k) => (await rowOf(k ?? '')).id),
    );
    const [freeId, busyId, finishedId] = ids as [number, number, number];
    const now = new Date();
    const holder = randomUUID();
    await claimNotifications(t.db, [{ id: busyId, claimToken: holder, now, leaseMs: 60_000 }]);
    await t.db
      .update(notifications)
      .set({ status: 'sent', messageId: 'elsewhere' })
      .where(eq(notifications.id, finishedId));

    const tokens = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const claims = await claimNotifications(t.db, [
      { id: freeId, claimToken: tokens[0] ?? '', now, leaseMs: 60_000 },
      { id: freeId, claimToken: tokens[1] ?? '', now, leaseMs: 60_000 },
      { id: busyId, claimToken: tokens[2] ?? '', now, leaseMs: 60_000 },
      { id: finishedId, claimToken: tokens[3] ?? '', now, leaseMs: 60_000 },
    ]);
    expect(claims[0]).toMatchObject({ kind: 'claimed', interrupted: false });
    // The second request for the same row lost to the first: it must not send.
    expect(claims[1]?.kind).toBe('changed');
    expect(claims[2]?.kind).toBe('held');
    expect(claims[3]).toEqual({ kind: 'final', status: 'sent' });
    const freeRow = await rowOf(free ?? '');
    expect(freeRow).toMatchObject({ status: 'sending', claimToken: tokens[0], attempts: 1 });
    expect((await rowOf(busy ?? '')).claimToken).toBe(holder);

    // Recording: only the holder's record lands, with its outbox row.
    const recorded = await markSentMany(t.db, [
      { id: freeId, claimToken: tokens[1] ?? '', provider: 'smtp', messageId: '<late@x>' },
      { id: busyId, claimToken: holder, provider: 'smtp', messageId: '<busy@x>' },
    ]);
    expect(recorded).toEqual([false, true]);
    expect(await rowOf(free ?? '')).toMatchObject({ status: 'sending', messageId: null });
    expect(await outboxStatus(free ?? '')).toBe('dispatched');
    expect(await rowOf(busy ?? '')).toMatchObject({ status: 'sent', messageId: '<busy@x>' });
    expect(await outboxStatus(busy ?? '')).toBe('done');
  });

  it('an attempt whose lease was taken over while the provider answered records nothing', async () => {
    const [key = ''] = await insertMessages('fenced', 1, 'sms');
    const handler = sendHandler(config);
    const queue = new Queue(`${notifyQueueNameFor('sms')}-fenced`, { connection, prefix });
    try {
      // A real job, run by hand (no worker): the late holder.
      const job = await queue.add('send-notification', { outboxKey: key }, { jobId: key });
      let answer!: () => void;
      const held = new Promise<void>((resolve) => (answer = resolve));
      fake.script({ kind: 'accept-then-hold', until: held });
      const before = fake.messages.length;
      const late = handler(job);
      while (fake.messages.length === before) await new Promise((r) => setTimeout(r, 10));

      // Its lease runs out (a pause longer than the lease) and another attempt takes the row.
      await t.db.execute(
        sql`update notifications set claim_expires_at = now() - interval '1 second'
             where dedupe_key = ${key}`,
      );
      const { id } = await rowOf(key);
      const next = randomUUID();
      const [claim] = await claimNotifications(t.db, [
        { id, claimToken: next, now: new Date(), leaseMs: 60_000 },
      ]);
      // The row was `sending` without a provider id: the new holder reconciles first.
      expect(claim).toMatchObject({ kind: 'claimed', interrupted: true });

      answer();
      await late;
      const after = await rowOf(key);
      expect(after).toMatchObject({ status: 'sending', claimToken: next, messageId: null });
      expect(after.providerId).toBeNull();
      expect(await outboxStatus(key)).toBe('dispatched');

      // The holder's record lands.
      const sid = fake.messages[fake.messages.length - 1]?.sid ?? '';
      expect(
        await markSentMany(t.db, [{ id, claimToken: next, provider: 'twilio', messageId: sid }]),
      ).toEqual([true]);
      expect(await rowOf(key)).toMatchObject({ status: 'sent', messageId: sid });
      expect(await outboxStatus(key)).toBe('done');
      expect(fake.messages.filter((m) => m.to === after.recipient)).toHaveLength(1);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });

  it("holds the channel's rate limit across two senders sharing its queue", async () => {
    const limited = senders.configWith({ EMAIL_RATE_LIMIT: '10' });
    const limiter = notifyWorkerLimiter(limited, 'email');
    expect(limiter).toEqual({ max: 10, duration: 1_000 });
    const keys = await insertMessages('limit', 40, 'email');
    const name = `${notifyQueueNameFor('email')}-limit`;
    const queue = new Queue(name, { connection, prefix });
    await queue.addBulk(
      keys.map((key) => ({
        name: 'send-notification',
        data: { outboxKey: key },
        opts: { ...notifyJobOptions(), jobId: key },
      })),
    );
    const starts: number[] = [];
    let finished = 0;
    // Two daemons: each its own handler (and statement batches), worker and Redis connection.
    const daemons = [0, 1].map(() => {
      const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
      const handler = sendHandler(limited);
      const worker = new Worker(name, handler, {
        connection: redis,
        prefix,
        concurrency: limited.notify.concurrency,
        limiter,
        settings: { backoffStrategy: notifyBackoffStrategy },
      });
      worker.on('active', () => starts.push(performance.now()));
      worker.on('completed', () => (finished += 1));
      worker.on('failed', () => (finished += 1));
      return { redis, worker };
    });
    try {
      const deadline = Date.now() + 20_000;
      while (finished < keys.length && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      for (const d of daemons) {
        await d.worker.close();
        d.redis.disconnect();
      }
      await queue.obliterate({ force: true });
      await queue.close();
    }
    expect(finished).toBe(keys.length);
    // The limiter admits 10 starts per 1 s window across both workers: starts spanning S s fall
    // in at most S + 1 windows (test/bench/notify-bench.ts counts the same way).
    const span = ((starts[starts.length - 1] ?? 0) - (starts[0] ?? 0)) / 1_000;
    expect(starts).toHaveLength(keys.length);
    expect(keys.length / (span + 1)).toBeLessThanOrEqual(10 * 1.05);
    for (const key of keys) expect((await rowOf(key)).status).toBe('sent');
  });
});
