import { randomBytes } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { and, eq, inArray } from 'drizzle-orm';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import twilio from 'twilio';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSendNotificationHandler } from '../../jobs/send-notification';
import {
  notifyBackoffStrategy,
  notifyQueueNameFor,
  NOTIFY_BACKOFF_TYPE,
} from '../../src/adapters/queue/notify-wiring';
import { manualClock, systemClock } from '../../src/adapters/clock/clock';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { insertNotification, insertOutbox } from '../../src/adapters/db/daemon-writers';
import { accounts, enforcementEvents, notifications, outbox } from '../../src/adapters/db/schema';
import { createNotifyPorts } from '../../src/adapters/notify/index';
import type { NotifyPorts } from '../../src/adapters/notify/ports';
import type { Config } from '../../src/config';
import type { Channel } from '../../src/domain/snapshot';
import { registerSmsCallback, SMS_CALLBACK_PATH } from '../../src/http/sms-callback';
import { createLogger } from '../../src/logger';
import { waitFor } from '../support/daemon';
import type { TestDatabase } from '../support/db';
import { twilioError, type FakeTwilio } from '../support/fake-twilio';
import { startNotifySenders, type NotifySenders } from '../support/notify-senders';
import type { SmtpSink } from '../support/smtp-sink';

/**
 * The send-notification job end to end: real BullMQ workers (own queue prefix) on the real
 * Redis, a fresh PostgreSQL database, a real SMTP server on loopback and a fake Twilio API on
 * loopback driven through the real twilio library. Rows are inserted as the evaluation would.
 */

const CALLBACK_URL = 'https://overdue.example.com/v1/callbacks/sms';
const logger = createLogger('silent');

let senders: NotifySenders;
let t: TestDatabase;
let sink: SmtpSink;
let fake: FakeTwilio;
let config: Config;
let ports: NotifyPorts;
let connection: Redis;
const prefix = `{test-${randomBytes(4).toString('hex')}}`;
const queues = new Map<Channel, Queue>();
const workers: Worker[] = [];
let relayRequests = 0;
let seq = 0;

/** The lead's relay in miniature: pending notify rows → jobs on the channel's queue. */
async function relay(): Promise<number> {
  const rows = await t.db
    .select()
    .from(outbox)
    .where(and(eq(outbox.kind, 'notify'), eq(outbox.status, 'pending')));
  for (const row of rows) {
    const channel = (row.payload as { channel: Channel }).channel;
    await enqueue(channel, row.idempotencyKey);
    await t.db.update(outbox).set({ status: 'dispatched' }).where(eq(outbox.id, row.id));
  }
  return rows.length;
}

async function enqueue(channel: Channel, key: string): Promise<Job> {
  const queue = queues.get(channel);
  if (queue === undefined) throw new Error('no queue');
  return queue.add(
    'send-notification',
    { outboxKey: key },
    {
      jobId: key,
      attempts: 5,
      backoff: { type: NOTIFY_BACKOFF_TYPE, delay: 40 },
      removeOnComplete: false,
      removeOnFail: false,
    },
  );
}

interface AccountOptions {
  locale?: string;
  timeZone?: string;
  email?: string | null;
  phone?: string | null;
}

async function account(options: AccountOptions = {}): Promise<string> {
  seq += 1;
  const id = `acct-${seq}`;
  await upsertAccount(t.db, {
    id,
    currency: 'USD',
    locale: options.locale ?? 'en',
    timeZone: options.timeZone ?? 'America/New_York',
    email: options.email === undefined ? `owner${seq}@example.com` : options.email,
    phone: options.phone === undefined ? `+1415555${String(1000 + seq)}` : options.phone,
  });
  return id;
}

/** Inserts the notification + outbox rows as the evaluation does and enqueues the job. */
async function notify(
  accountId: string,
  channel: Channel,
  template = 'suspended',
  params: Record<string, unknown> = {
    currency: 'USD',
    overdueMinor: 123456,
    limit: 'amount',
    products: ['live', 'oss'],
    otherProducts: ['oss'],
    causedByOtherProduct: true,
  },
  relayNow = true,
): Promise<string> {
  const [acct] = await t.db.select().from(accounts).where(eq(accounts.id, accountId));
  if (acct === undefined) throw new Error('no account');
  const key = `${template}-v1-${accountId}-1-${channel}`;
  await t.db.transaction(async (tx) => {
    await insertNotification(tx, {
      dedupeKey: key,
      accountId,
      channel,
      template,
      locale: acct.locale,
      recipient: (channel === 'email' ? acct.email : acct.phone) ?? '',
      params,
    });
    const [row] = await tx.select().from(notifications).where(eq(notifications.dedupeKey, key));
    await insertOutbox(tx, {
      idempotencyKey: key,
      kind: 'notify',
      accountId,
      payload: { notificationId: row?.id, channel },
    });
  });
  if (relayNow) await relay();
  return key;
}

async function row(key: string) {
  const [r] = await t.db.select().from(notifications).where(eq(notifications.dedupeKey, key));
  if (r === undefined) throw new Error(`no notification ${key}`);
  return r;
}

async function outboxRow(key: string) {
  const [r] = await t.db.select().from(outbox).where(eq(outbox.idempotencyKey, key));
  if (r === undefined) throw new Error(`no outbox ${key}`);
  return r;
}

/** Waits until the job is completed or failed (for good); returns the final state. */
async function settled(channel: Channel, key: string, timeoutMs = 15_000): Promise<string> {
  const queue = queues.get(channel);
  if (queue === undefined) throw new Error('no queue');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await queue.getJob(key);
    const state = job === undefined ? 'missing' : await job.getState();
    if (state === 'completed' || state === 'failed') return state;
    if (Date.now() > deadline) throw new Error(`job ${key} still ${state}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  senders = await startNotifySenders(
    {
      NOTIFY_TIMEOUT: '700ms',
      SMS_STATUS_CALLBACK_URL: CALLBACK_URL,
      TOP_UP_URL: 'https://console.example.com/top-up',
    },
    { logger },
  );
  ({ t, sink, fake, config, ports, connection } = senders);
  const handler = createSendNotificationHandler({
    db: t.db,
    config,
    logger,
    clock: systemClock,
    ports,
    requestRelay: () => {
      relayRequests += 1;
      void relay();
    },
  });
  for (const channel of ['email', 'sms'] as const) {
    const name = notifyQueueNameFor(channel);
    queues.set(channel, new Queue(name, { connection, prefix }));
    workers.push(
      new Worker(name, handler, {
        connection,
        prefix,
        concurrency: 4,
        settings: { backoffStrategy: notifyBackoffStrategy },
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  for (const q of queues.values()) {
    await q.obliterate({ force: true });
    await q.close();
  }
  await senders?.close();
});

beforeEach(() => {
  relayRequests = 0;
});

describe('email over SMTP', () => {
  it('sends the rendered suspension notice once, with text and HTML parts and stable headers', async () => {
    const id = await account();
    const key = await notify(id, 'email');
    expect(await settled('email', key)).toBe('completed');

    const mails = sink.messages.filter((m) => m.headers.get('x-notification-key') === key);
    expect(mails).toHaveLength(1);
    const mail = mails[0];
    expect(mail?.subject).toBe('Services suspended: $1,234.56 overdue');
    expect(mail?.messageId).toBe(`<${key}@example.com>`);
    expect(mail?.from?.text).toContain('billing@example.com');
    expect(mail?.headers.get('content-language')).toBe('en');
    expect(mail?.text).toContain('unpaid bills of other products: oss');
    expect(mail?.text).toContain('How to resume: pay the full overdue amount of $1,234.56');
    expect(mail?.html).toContain('<a href="https://console.example.com/top-up">');

    const r = await row(key);
    expect(r.status).toBe('sent');
    expect(r.providerId).toBe('smtp');
    expect(r.messageId).toBe(`<${key}@example.com>`);
    expect(r.attempts).toBe(1);
    expect((await outboxRow(key)).status).toBe('done');
  });

  it('renders Simplified Chinese for a zh-CN account, instants in its zone', async () => {
    const id = await account({ locale: 'zh-CN', timeZone: 'Asia/Shanghai' });
    const key = await notify(id, 'email', 'studio-suspended', {
      currency: 'USD',
      overdueMinor: 5000,
      releaseAt: '2026-03-03T02:00:00.000Z',
      streamingStudios: ['主舞台'],
      anyStreaming: true,
    });
    expect(await settled('email', key)).toBe('completed');
    const mail = sink.messages.find((m) => m.headers.get('x-notification-key') === key);
    expect(mail?.subject).toBe('导播台已暂停：欠费 US$50.00');
    expect(mail?.text).toContain('主舞台');
    expect(mail?.text).toContain('2026年3月3日'); // 02:00 UTC = 10:00 in Shanghai
    expect(mail?.text).toContain('10:00');
    expect(mail?.html).toContain('<html lang="zh-CN">');
    expect(mail?.headers.get('content-language')).toBe('zh-CN');
  });

  it('a 421 is retried and the message delivered once with the same Message-ID', async () => {
    const id = await account();
    sink.failNext({ stage: 'rcpt', code: 421, message: 'Try again later' });
    sink.failNext({ stage: 'data', code: 451, message: 'Local error, retry' });
    const key = await notify(id, 'email');
    expect(await settled('email', key)).toBe('completed');
    expect(sink.byMessageId.get(`<${key}@example.com>`)).toBe(1);
    const r = await row(key);
    expect(r.status).toBe('sent');
    expect(r.attempts).toBe(3);
  });

  it('a 550 fails fast, marks the address bounced and falls back to SMS once', async () => {
    const id = await account();
    sink.failNext({ stage: 'rcpt', code: 550, message: '5.1.1 No such user' });
    const key = await notify(id, 'email');
    expect(await settled('email', key)).toBe('failed');
    const r = await row(key);
    expect(r.status).toBe('failed');
    expect(r.attempts).toBe(1);
    expect(r.lastError).toContain('smtp-550');
    const [acct] = await t.db.select().from(accounts).where(eq(accounts.id, id));
    expect(acct?.emailBounced).toBe(true);
    expect(relayRequests).toBe(1);

    const fallbackKey = `${key}-fallback`;
    expect(await settled('sms', fallbackKey)).toBe('completed');
    const fb = await row(fallbackKey);
    expect(fb.channel).toBe('sms');
    expect(fb.recipient).toBe(acct?.phone);
    expect(fb.status).toBe('sent');
    expect(fake.messages.filter((m) => m.to === acct?.phone)).toHaveLength(1);
    expect(fake.messages.find((m) => m.to === acct?.phone)?.body).toContain('$1,234.56');
    const events = await t.db
      .select()
      .from(enforcementEvents)
      .where(eq(enforcementEvents.accountId, id));
    expect(events.map((e) => e.kind)).toEqual(['notification-failed']);
  });

  it('no fallback when the decision already has a live SMS', async () => {
    const id = await account();
    const smsKey = await notify(id, 'sms');
    expect(await settled('sms', smsKey)).toBe('completed');
    sink.failNext({ stage: 'rcpt', code: 550, message: '5.1.1 No such user' });
    const key = await notify(id, 'email');
    expect(await settled('email', key)).toBe('failed');
    expect(relayRequests).toBe(0);
    const fallbacks = await t.db
      .select()
      .from(notifications)
      .where(eq(notifications.dedupeKey, `${key}-fallback`));
    expect(fallbacks).toHaveLength(0);
  });

  it('a duplicate job for a sent message sends nothing', async () => {
    const id = await account();
    const key = await notify(id, 'email');
    expect(await settled('email', key)).toBe('completed');
    const before = sink.accepted();
    // The same key again under another job id (e.g. Redis lost the finished job).
    await queues
      .get('email')
      ?.add('send-notification', { outboxKey: key }, { jobId: `${key}-again` });
    expect(await settled('email', `${key}-again`)).toBe('completed');
    expect(sink.accepted()).toBe(before);
  });
});

describe('SMS through the twilio library', () => {
  it('sends with the status callback URL and stores the SID', async () => {
    const id = await account();
    const key = await notify(id, 'sms');
    expect(await settled('sms', key)).toBe('completed');
    const r = await row(key);
    const sent = fake.messages.filter((m) => m.to === r.recipient);
    expect(sent).toHaveLength(1);
    expect(r.messageId).toBe(sent[0]?.sid);
    expect(r.providerId).toBe('twilio');
    expect(sent[0]?.statusCallback).toBe(CALLBACK_URL);
    expect(sent[0]?.from).toBe('+15005550006');
    expect(sent[0]?.body).toMatch(/^Live video suspended: \$1,234\.56 overdue/);
  });

  it('a burst of 20429 is retried with backoff and delivered once', async () => {
    const id = await account();
    fake.script(twilioError(20429), 3);
    const key = await notify(id, 'sms');
    expect(await settled('sms', key)).toBe('completed');
    const r = await row(key);
    expect(r.status).toBe('sent');
    expect(r.attempts).toBe(4);
    expect(fake.messages.filter((m) => m.to === r.recipient)).toHaveLength(1);
    const job = await queues.get('sms')?.getJob(key);
    expect(job?.attemptsMade).toBeLessThan(5);
  });

  it('a message still failing transiently after NOTIFY_GIVE_UP_AFTER fails and falls back once', async () => {
    const id = await account();
    const key = await notify(id, 'sms', 'suspended', undefined, false);
    // Queued 25 hours ago (the default limit is 24 h), the provider still answering 503.
    await t.raw`update notifications set created_at = now() - interval '25 hours'
                 where dedupe_key = ${key}`;
    fake.script(twilioError(30001));
    await relay();
    expect(await settled('sms', key)).toBe('failed');
    const r = await row(key);
    expect(r.status).toBe('failed');
    expect(r.lastError).toMatch(/gave up after 1 attempts over 1500 min/);
    expect(relayRequests).toBe(1);
    expect((await row(`${key}-fallback`)).channel).toBe('email');
  });

  it('21610 marks the number opted out and falls back to email once', async () => {
    const id = await account();
    fake.script(twilioError(21610));
    const key = await notify(id, 'sms');
    expect(await settled('sms', key)).toBe('failed');
    const r = await row(key);
    expect(r.status).toBe('failed');
    expect(r.attempts).toBe(1);
    expect(r.lastError).toContain('twilio-21610');
    const [acct] = await t.db.select().from(accounts).where(eq(accounts.id, id));
    expect(acct?.smsOptedOut).toBe(true);

    const fallbackKey = `${key}-fallback`;
    expect(await settled('email', fallbackKey)).toBe('completed');
    expect(sink.byMessageId.get(`<${fallbackKey}@example.com>`)).toBe(1);
    // The fallback is final: another SMS for this account fails at once without calling Twilio.
    const creates = fake.createRequests();
    const again = await notify(id, 'sms', 'resumed', { currency: 'USD', resumed: 1 });
    expect(await settled('sms', again)).toBe('failed');
    expect(fake.createRequests()).toBe(creates);
    expect((await row(again)).lastError).toContain('opted-out');
  });

  it('21211 (invalid number) fails fast without marking the contact', async () => {
    const id = await account({ email: null });
    fake.script(twilioError(21211));
    const key = await notify(id, 'sms');
    expect(await settled('sms', key)).toBe('failed');
    const r = await row(key);
    expect(r.attempts).toBe(1);
    expect(r.lastError).toContain('twilio-21211');
    const [acct] = await t.db.select().from(accounts).where(eq(accounts.id, id));
    expect(acct?.smsOptedOut).toBe(false);
    // No email address: nothing to fall back to.
    expect(relayRequests).toBe(0);
    expect((await outboxRow(key)).status).toBe('failed');
  });

  it('a timeout after the provider accepted reconciles instead of sending again', async () => {
    const id = await account();
    fake.script({ kind: 'accept-then-hang', delayMs: 3_000 });
    const key = await notify(id, 'sms');
    expect(await settled('sms', key)).toBe('completed');
    const r = await row(key);
    const stored = fake.messages.filter((m) => m.to === r.recipient);
    expect(stored).toHaveLength(1);
    expect(r.status).toBe('sent');
    expect(r.messageId).toBe(stored[0]?.sid);
    expect(r.attempts).toBe(2);
    expect(fake.listRequests()).toBeGreaterThan(0);
  });
});

describe('one sender at a time per message', () => {
  // A handler with a timeout long enough that a held provider call is not cut short; its jobs
  // are real BullMQ jobs on a queue without workers, run by calling the handler.
  let slowPorts: NotifyPorts;
  let slow: (job: Job) => Promise<void>;
  let parked: Queue;
  beforeAll(() => {
    const slowConfig = senders.configWith({ NOTIFY_TIMEOUT: '10s' });
    slowPorts = createNotifyPorts(slowConfig, logger);
    slow = createSendNotificationHandler({
      db: t.db,
      config: slowConfig,
      logger,
      clock: systemClock,
      ports: slowPorts,
      requestRelay: () => undefined,
    });
    parked = new Queue('parked', { connection, prefix });
  });
  afterAll(async () => {
    await parked.obliterate({ force: true });
    await parked.close();
    await slowPorts.close();
  });

  /** Starts an attempt whose provider call is accepted and then held until the returned call. */
  async function heldAttempt(key: string): Promise<{ done: Promise<void>; answer: () => void }> {
    const recipient = (await row(key)).recipient;
    let answer = (): void => undefined;
    fake.script({ kind: 'accept-then-hold', until: new Promise<void>((r) => (answer = r)) });
    const done = slow(await parkedJob(key, 'held'));
    const deadline = Date.now() + 10_000;
    while (!fake.messages.some((m) => m.to === recipient)) {
      if (Date.now() > deadline) throw new Error('the attempt never reached the provider');
      await new Promise((r) => setTimeout(r, 10));
    }
    return { done, answer: () => answer() };
  }

  function parkedJob(key: string, n: string): Promise<Job> {
    return parked.add('send-notification', { outboxKey: key }, { jobId: `${key}-${n}` });
  }

  it('a second job for a message being sent waits for the lease instead of sending again', async () => {
    const id = await account();
    const key = await notify(id, 'sms', 'suspended', undefined, false);
    const held = await heldAttempt(key);
    const during = await row(key);
    expect(during.status).toBe('sending');
    expect(during.claimToken).not.toBeNull();
    expect(during.claimExpiresAt?.getTime()).toBeGreaterThan(Date.now() + 20_000);
    await expect(slow(await parkedJob(key, 'second'))).rejects.toThrow(/held by another attempt/);
    held.answer();
    await held.done;
    expect((await row(key)).status).toBe('sent');
    // After the holder finished, another job only settles the outbox.
    await slow(await parkedJob(key, 'third'));
    expect(fake.messages.filter((m) => m.to === during.recipient)).toHaveLength(1);
    expect((await row(key)).attempts).toBe(1);
    expect((await outboxRow(key)).status).toBe('done');
  });

  it('a lease that ran out is taken over, and the SMS reconciled rather than sent again', async () => {
    const id = await account();
    const key = await notify(id, 'sms', 'suspended', undefined, false);
    const held = await heldAttempt(key);
    // The holder hangs past its lease (as one that died would).
    await t.raw`update notifications set claim_expires_at = now() - interval '1 second'
                 where dedupe_key = ${key}`;
    await relay();
    expect(await settled('sms', key)).toBe('completed');
    const r = await row(key);
    expect(r.status).toBe('sent');
    expect(r.attempts).toBe(2);
    // The late holder's answer changes nothing: its token no longer holds the row.
    held.answer();
    await held.done;
    expect(fake.messages.filter((m) => m.to === r.recipient)).toHaveLength(1);
    expect((await row(key)).messageId).toBe(r.messageId);
  });
});

describe('delivery callbacks', () => {
  let app: FastifyInstance;

  beforeAll(async () => {
    app = Fastify();
    await registerSmsCallback(app, { db: t.db, config, logger });
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
  });

  function post(params: Record<string, string>, signature: string | null) {
    return app.inject({
      method: 'POST',
      url: SMS_CALLBACK_PATH,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(signature === null ? {} : { 'x-twilio-signature': signature }),
      },
      payload: new URLSearchParams(params).toString(),
    });
  }

  function signed(params: Record<string, string>) {
    return post(params, twilio.getExpectedTwilioSignature(fake.authToken, CALLBACK_URL, params));
  }

  async function sentSms(): Promise<{ key: string; sid: string }> {
    const id = await account();
    const key = await notify(id, 'sms');
    expect(await settled('sms', key)).toBe('completed');
    const r = await row(key);
    return { key, sid: r.messageId ?? '' };
  }

  it('refuses a bad or missing signature with 403 and changes nothing', async () => {
    const { key, sid } = await sentSms();
    const params = { MessageSid: sid, MessageStatus: 'delivered', AccountSid: fake.accountSid };
    const forged = twilio.getExpectedTwilioSignature('not-the-token', CALLBACK_URL, params);
    expect((await post(params, forged)).statusCode).toBe(403);
    expect((await post(params, null)).statusCode).toBe(403);
    // Signed for another URL, or with the parameters changed after signing.
    const otherUrl = twilio.getExpectedTwilioSignature(
      fake.authToken,
      'https://evil.example/',
      params,
    );
    expect((await post(params, otherUrl)).statusCode).toBe(403);
    const good = twilio.getExpectedTwilioSignature(fake.authToken, CALLBACK_URL, params);
    expect((await post({ ...params, MessageStatus: 'failed' }, good)).statusCode).toBe(403);
    expect((await row(key)).status).toBe('sent');
  });

  it('moves forward only: a late "sent" never overwrites "delivered"; duplicates are ignored', async () => {
    const { key, sid } = await sentSms();
    const base = { MessageSid: sid, AccountSid: fake.accountSid };
    expect((await signed({ ...base, MessageStatus: 'delivered' })).statusCode).toBe(204);
    const delivered = await row(key);
    expect(delivered.status).toBe('delivered');
    expect(delivered.deliveredAt).not.toBeNull();

    expect((await signed({ ...base, MessageStatus: 'sent' })).statusCode).toBe(204);
    expect((await signed({ ...base, MessageStatus: 'delivered' })).statusCode).toBe(204);
    expect(
      (await signed({ ...base, MessageStatus: 'undelivered', ErrorCode: '30003' })).statusCode,
    ).toBe(204);
    const after = await row(key);
    expect(after.status).toBe('delivered');
    expect(after.deliveredAt?.getTime()).toBe(delivered.deliveredAt?.getTime());
  });

  it('records undelivered with the error code; queued/sending are not progress', async () => {
    const { key, sid } = await sentSms();
    const base = { MessageSid: sid, AccountSid: fake.accountSid };
    expect((await signed({ ...base, MessageStatus: 'queued' })).statusCode).toBe(204);
    expect((await row(key)).status).toBe('sent');
    expect(
      (await signed({ ...base, MessageStatus: 'undelivered', ErrorCode: '30006' })).statusCode,
    ).toBe(204);
    const r = await row(key);
    expect(r.status).toBe('undeliverable');
    expect(r.lastError).toContain('30006');
  });

  it("an early callback is applied: a status that beats the sender's update is kept, then recorded", async () => {
    const id = await account();
    let answer = (): void => undefined;
    fake.script({ kind: 'accept-then-hold', until: new Promise<void>((r) => (answer = r)) });
    const before = fake.messages.length;
    const key = await notify(id, 'sms');
    const message = await waitFor(() => fake.messages[before], 10_000, 'message at the provider');
    // Delivered before the sender has the SID: kept, not lost.
    const early = await signed({
      MessageSid: message.sid,
      MessageStatus: 'delivered',
      AccountSid: fake.accountSid,
    });
    expect(early.statusCode).toBe(204);
    expect((await row(key)).status).toBe('sending');
    const kept = await t.raw<{ status: string }[]>`
      select status from sms_early_callbacks where message_id = ${message.sid}`;
    expect(kept).toEqual([{ status: 'delivered' }]);
    answer();
    expect(await settled('sms', key)).toBe('completed');
    const r = await row(key);
    expect(r).toMatchObject({ status: 'delivered', messageId: message.sid });
    expect(r.deliveredAt).not.toBeNull();
    expect(
      await t.raw`select 1 from sms_early_callbacks where message_id = ${message.sid}`,
    ).toEqual([]);
  });

  it('unknown messages are acknowledged; malformed bodies get 400', async () => {
    const unknown = { MessageSid: `SM${'0'.repeat(32)}`, MessageStatus: 'delivered' };
    expect((await signed(unknown)).statusCode).toBe(204);
    expect((await signed({ MessageStatus: 'delivered' })).statusCode).toBe(400);
    const rows = await t.db
      .select()
      .from(notifications)
      .where(inArray(notifications.status, ['delivered']));
    expect(rows.every((r) => r.messageId !== unknown.MessageSid)).toBe(true);
  });
});

describe('quiet hours at send time', () => {
  it('an SMS due at 22:30 local waits for 08:00 local (spring-forward night); email goes at once', async () => {
    const quietConfig = senders.configWith({ QUIET_HOURS: '22:00-08:00' });
    // 2036-03-09T03:30Z is 22:30 EST on Mar 8 in New York; DST starts that night, so quiet ends
    // at 08:00 EDT = 12:00Z (not 13:00Z). In the future, because BullMQ delays by Redis time.
    const clock = manualClock(new Date('2036-03-09T03:30:00Z'));
    const handler = createSendNotificationHandler({
      db: t.db,
      config: quietConfig,
      logger,
      clock,
      ports,
      requestRelay: () => undefined,
    });
    const name = `quiet-${randomBytes(3).toString('hex')}`;
    const queue = new Queue(name, { connection, prefix });
    const worker = new Worker(name, handler, { connection, prefix, concurrency: 2 });
    try {
      const id = await account({ timeZone: 'America/New_York' });
      // Not relayed to the shared queues: this test's own worker (with the pinned clock) runs them.
      const smsKey = await notify(id, 'sms', 'resumed', { currency: 'USD', resumed: 1 }, false);
      const emailKey = await notify(id, 'email', 'resumed', { currency: 'USD', resumed: 1 }, false);
      const opts = { attempts: 3, removeOnComplete: false, removeOnFail: false };
      await queue.add(
        'send-notification',
        { outboxKey: smsKey },
        { ...opts, jobId: `q-${smsKey}` },
      );
      await queue.add(
        'send-notification',
        { outboxKey: emailKey },
        { ...opts, jobId: `q-${emailKey}` },
      );

      const deadline = Date.now() + 10_000;
      let smsState = '';
      let emailState = '';
      while (Date.now() < deadline && (smsState !== 'delayed' || emailState !== 'completed')) {
        smsState = (await (await queue.getJob(`q-${smsKey}`))?.getState()) ?? 'missing';
        emailState = (await (await queue.getJob(`q-${emailKey}`))?.getState()) ?? 'missing';
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(emailState).toBe('completed');
      expect(smsState).toBe('delayed');
      // BullMQ keeps delayed jobs scored by due time * 4096 + a sequence number.
      const score = await connection.zscore(`${prefix}:${name}:delayed`, `q-${smsKey}`);
      expect(Math.floor(Number(score) / 4096)).toBe(Date.parse('2036-03-09T12:00:00Z'));
      const sms = await row(smsKey);
      expect(sms.status).toBe('pending');
      expect(sms.attempts).toBe(0);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
