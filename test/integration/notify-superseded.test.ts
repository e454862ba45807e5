import type { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/adapters/clock/clock';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

/**
 * Notices re-checked at send time, end to end: the daemon (real relay, real senders) on the
 * real PostgreSQL and Redis, a real SMTP server and a fake Twilio API on loopback. The daemon's
 * clock is pinned (quiet hours 22:00–08:00 in the customer's zone, Asia/Shanghai = UTC+8), so an
 * SMS decided at night waits for 08:00 in a delayed job; the test moves the clock to 08:00 and
 * promotes the job instead of waiting. BullMQ delays by Redis time, hence dates in 2036.
 */

const clock = manualClock(new Date('2036-03-10T15:00:00Z')); // 23:00 in Shanghai
let h: NotifyHarness;
let phoneSeq = 0;

beforeAll(async () => {
  h = await startNotifyHarness({ QUIET_HOURS: '22:00-08:00' }, { clock });
});

afterAll(async () => {
  await h?.stop();
});

interface Row {
  dedupe_key: string;
  template: string;
  channel: string;
  status: string;
  last_error: string | null;
}

async function rows(accountId: string): Promise<Row[]> {
  return h.t.raw<Row[]>`
    select dedupe_key, template, channel, status, last_error from notifications
     where account_id = ${accountId} order by id`;
}

async function account(
  id: string,
  opts: { email?: boolean; balance?: number; protection?: boolean } = {},
): Promise<string> {
  phoneSeq += 1;
  const phone = `+86138000${String(10_000 + phoneSeq)}`;
  await h.t.raw`
    insert into accounts (id, currency, time_zone, email, phone, notify_email,
                          available_balance_minor, protection_custom)
    values (${id}, 'CNY', 'Asia/Shanghai', ${`${id}@example.com`}, ${phone},
            ${opts.email !== false}, ${opts.balance ?? 1_000_000}, ${opts.protection === false})`;
  return phone;
}

async function overdueBill(accountId: string, amountMinor = 8888): Promise<void> {
  const due = new Date(clock.now().getTime() - 3_600_000);
  await h.t.raw`
    insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
    values (${`${accountId}-b`}, ${accountId}, 'live', ${amountMinor}, ${new Date(due.getTime() - 86_400_000)}, ${due})`;
}

async function payAll(accountId: string): Promise<void> {
  await h.t.raw`update bills set paid_minor = amount_minor, status = 'paid'
                 where account_id = ${accountId}`;
}

const smsQueue = (): Queue => h.daemon.ctx.queues.byName['notify-sms'];

/** Waits until the account has `count` SMS jobs delayed (quiet hours); returns them. */
async function delayedSms(accountId: string, count: number): Promise<Job[]> {
  return waitFor(
    async () => {
      const delayed = (await smsQueue().getDelayed()).filter((j) => j.id?.includes(accountId));
      return delayed.length === count ? delayed : null;
    },
    15_000,
    `${count} delayed SMS of ${accountId}`,
  );
}

/** Their turn has come: runs delayed jobs now (the clock says 08:00, Redis does not). */
async function promote(jobs: readonly Job[]): Promise<void> {
  for (const job of jobs) await job.promote();
}

const mailsTo = (accountId: string) =>
  h.sink.messages.filter((m) => m.to && 'text' in m.to && m.to.text.includes(accountId));
const smsTo = (phone: string) => h.twilio.messages.filter((m) => m.to === phone);

describe('notices re-checked at send time', () => {
  it('a suspension SMS held by quiet hours is superseded once the account paid and resumed; the resume SMS is skipped, the emails go', async () => {
    clock.set(new Date('2036-03-10T15:00:00Z')); // 23:00 local: SMS wait for 08:00
    const id = 'night-pay';
    const phone = await account(id, { protection: false });
    await h.t
      .raw`insert into services (id, account_id, kind) values (${`${id}-s`}, ${id}, 'streaming')`;
    await overdueBill(id);
    await waitFor(() => mailsTo(id).length === 1, 10_000, 'suspension email');
    expect(mailsTo(id)[0]?.subject).toMatch(/suspend/i);

    // 07:00 local: the customer pays; services resume; the resume email goes at once.
    clock.set(new Date('2036-03-10T23:00:00Z'));
    await payAll(id);
    await waitFor(() => mailsTo(id).length === 2, 10_000, 'resume email');
    const held = await delayedSms(id, 2);
    const [state] = await h.t.raw<{ enforcement_state: string }[]>`
      select enforcement_state from accounts where id = ${id}`;
    expect(state?.enforcement_state).toBe('active');

    // 08:00 local: both SMS come due.
    clock.set(new Date('2036-03-11T00:00:00Z'));
    await promote(held);
    const settled = await waitFor(
      async () => {
        const all = await rows(id);
        return all.filter((r) => r.channel === 'sms').every((r) => r.status === 'superseded')
          ? all
          : null;
      },
      10_000,
      'both SMS superseded',
    );
    expect(settled.map((r) => [r.template, r.channel, r.status])).toEqual([
      ['suspended', 'email', 'sent'],
      ['suspended', 'sms', 'superseded'],
      ['resumed', 'email', 'sent'],
      ['resumed', 'sms', 'superseded'],
    ]);
    expect(settled[1]?.last_error).toBe('overdue episode 1 ended before it was sent');
    expect(settled[3]?.last_error).toMatch(
      /^the suspension notice of episode 1 on this channel was superseded/,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(smsTo(phone)).toEqual([]);
    expect(mailsTo(id)).toHaveLength(2);

    const outbox = await h.t.raw<{ idempotency_key: string; status: string; last_error: string }[]>`
      select idempotency_key, status, last_error from outbox
       where account_id = ${id} and kind = 'notify' and idempotency_key like '%-sms'`;
    expect(outbox).toHaveLength(2);
    for (const o of outbox) {
      expect(o.status).toBe('superseded');
      expect(o.last_error).toMatch(/\S/);
    }
    const events = await h.t.raw<{ detail: { key: string; reason: string } }[]>`
      select detail from enforcement_events
       where account_id = ${id} and kind = 'notification-superseded' order by id`;
    expect(events.map((e) => e.detail.key).sort()).toEqual(
      outbox.map((o) => o.idempotency_key).sort(),
    );
  });

  it('a low-balance SMS held by quiet hours is superseded after a top-up above the threshold; without one it goes', async () => {
    clock.set(new Date('2036-03-11T15:00:00Z')); // 23:00 local
    const toppedUp = 'lowbal-topup';
    const stillLow = 'lowbal-still';
    const toppedUpPhone = await account(toppedUp, { email: false, balance: 100 });
    const stillLowPhone = await account(stillLow, { email: false, balance: 100 });
    await waitFor(
      async () => (await rows(toppedUp)).length === 1 && (await rows(stillLow)).length === 1,
      10_000,
      'low-balance rows',
    );
    const held = [...(await delayedSms(toppedUp, 1)), ...(await delayedSms(stillLow, 1))];
    await h.t.raw`update accounts set available_balance_minor = 50000 where id = ${toppedUp}`;

    clock.set(new Date('2036-03-12T00:00:00Z')); // 08:00 local
    await promote(held);
    await waitFor(() => smsTo(stillLowPhone).length === 1, 10_000, 'the low-balance SMS');
    const [superseded] = await waitFor(
      async () => {
        const r = await rows(toppedUp);
        return r[0]?.status === 'superseded' ? r : null;
      },
      10_000,
      'low-balance SMS superseded',
    );
    expect(superseded).toMatchObject({
      template: 'low-balance',
      channel: 'sms',
      last_error: 'balance 50000 is no longer below the threshold 10000',
    });
    await waitFor(
      async () => (await rows(stillLow))[0]?.status === 'sent',
      15_000,
      'the low-balance SMS recorded sent',
    );
    expect(smsTo(toppedUpPhone)).toEqual([]);
  });

  it('a low-balance reminder superseded by a top-up goes when the balance falls below the threshold again that day, and only once', async () => {
    clock.set(new Date('2036-03-14T16:30:00Z')); // 00:30 local on the 15th: SMS wait for 08:00
    const id = 'lowbal-again';
    const phone = await account(id, { email: false, balance: 100 });
    const held = await delayedSms(id, 1);
    const [first] = await rows(id);
    expect(first).toMatchObject({ template: 'low-balance', status: 'pending' });
    const key = first?.dedupe_key ?? '';
    expect(key).toMatch(/^lowbal-/);

    // 01:00: a top-up; 08:00: the reminder's turn comes and it is no longer true.
    clock.set(new Date('2036-03-14T17:00:00Z'));
    await h.t.raw`update accounts set available_balance_minor = 50000 where id = ${id}`;
    clock.set(new Date('2036-03-15T00:00:00Z'));
    await promote(held);
    await waitFor(
      async () => (await rows(id))[0]?.status === 'superseded',
      10_000,
      'the reminder superseded',
    );
    expect(smsTo(phone)).toEqual([]);

    // 10:00, the same local day: the balance is low again. The day's reminder is wanted after all.
    clock.set(new Date('2036-03-15T02:00:00Z'));
    await h.t.raw`update accounts set available_balance_minor = 2500 where id = ${id}`;
    await h.daemon.evaluateSoon(id, 'test');
    await waitFor(() => smsTo(phone).length === 1, 10_000, 'the low-balance SMS');
    expect(smsTo(phone)[0]?.body).toMatch(/25\.00/);
    const after = await waitFor(
      async () => {
        const r = await rows(id);
        return r[0]?.status === 'sent' ? r : null;
      },
      15_000,
      'the reminder recorded sent',
    );
    expect(after).toEqual([
      {
        dedupe_key: key,
        template: 'low-balance',
        channel: 'sms',
        status: 'sent',
        last_error: null,
      },
    ]);
    const outbox = await h.t.raw<{ status: string; last_error: string | null }[]>`
      select status, last_error from outbox where idempotency_key = ${key}`;
    expect(outbox).toEqual([{ status: 'done', last_error: null }]);

    // Sent once: lower still, evaluated again the same day, nothing more goes.
    await h.t.raw`update accounts set available_balance_minor = 900 where id = ${id}`;
    await h.daemon.evaluateSoon(id, 'test');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(smsTo(phone)).toHaveLength(1);
    expect(await rows(id)).toHaveLength(1);
  });

  it('a notify row sent back to pending while its earlier job still runs stays pending until that job is gone (BullMQ would drop a second job under the key)', async () => {
    clock.set(new Date('2036-03-16T02:00:00Z')); // 10:00 local: SMS go at once
    let answer = (): void => undefined;
    const until = new Promise<void>((resolve) => {
      answer = resolve;
    });
    h.twilio.script({ kind: 'accept-then-hold', until });
    const id = 'lowbal-busy';
    const phone = await account(id, { email: false, balance: 100 });
    // The provider has the SMS and has not answered: the job is active.
    await waitFor(() => smsTo(phone).length === 1, 10_000, 'the SMS at the provider');
    const [row] = await rows(id);
    const key = row?.dedupe_key ?? '';
    expect(await smsQueue().getJobState(key)).toBe('active');

    await h.t.raw`update outbox set status = 'pending' where idempotency_key = ${key}`;
    await h.daemon.ctx.relay.drain();
    await new Promise((r) => setTimeout(r, 500)); // a few polls of the relay
    const outbox = () =>
      h.t.raw<{ status: string; attempts: number }[]>`
        select status, attempts from outbox where idempotency_key = ${key}`;
    expect(await outbox()).toEqual([{ status: 'pending', attempts: 1 }]);
    expect(await smsQueue().getJobState(key)).toBe('active');

    answer();
    await waitFor(
      async () => (await outbox())[0]?.status === 'done',
      10_000,
      'the outbox row done',
    );
    expect((await rows(id))[0]?.status).toBe('sent');
    await new Promise((r) => setTimeout(r, 500));
    expect(smsTo(phone)).toHaveLength(1);
    expect(await smsQueue().getJobState(key)).toBe('unknown');
  });

  it('a release warning SMS held by quiet hours is superseded once the release was cancelled', async () => {
    clock.set(new Date('2036-03-12T01:00:00Z')); // 09:00 local: SMS go at once
    const id = 'studio-warn';
    const phone = await account(id, { email: false });
    await h.t.raw`insert into services (id, account_id, kind, plan_type)
                  values (${`${id}-studio`}, ${id}, 'studio', 'duration')`;
    await h.t.raw`insert into studio_instances (id, account_id, service_id, name)
                  values (${`${id}-inst`}, ${id}, ${`${id}-studio`}, 'Main stage')`;
    await overdueBill(id, 100); // within the default protection: only the studio is suspended
    // The studio suspension notice and the day's overdue reminder, in that order.
    const first = await waitFor(
      async () => {
        const all = await rows(id);
        return all.length === 2 && all.every((r) => r.status === 'sent') ? all : null;
      },
      10_000,
      'studio suspension and reminder SMS sent',
    );
    expect(smsTo(phone)).toHaveLength(2);
    expect(first.map((r) => [r.template, r.status])).toEqual([
      ['studio-suspended', 'sent'],
      ['overdue-reminder', 'sent'],
    ]);
    expect(smsTo(phone)[0]?.body).toMatch(/studio/i);

    // 22 h later (07:01 local, quiet): the warning is decided and waits for 08:00.
    clock.set(new Date('2036-03-12T23:01:00Z'));
    await h.daemon.evaluateSoon(id, 'test');
    await waitFor(
      async () => (await rows(id)).some((r) => r.template === 'studio-release-warning'),
      10_000,
      'release warning row',
    );
    // The customer pays before 08:00: the release is cancelled.
    await payAll(id);
    await waitFor(
      async () => {
        const [inst] = await h.t.raw<{ release_due_at: Date | null }[]>`
          select release_due_at from studio_instances where id = ${`${id}-inst`}`;
        return inst?.release_due_at === null;
      },
      10_000,
      'release cancelled',
    );

    // The warning, the new day's reminder and the resume notice.
    const held = await delayedSms(id, 3);
    clock.set(new Date('2036-03-13T00:00:00Z')); // 08:00 local
    await promote(held);
    const settled = await waitFor(
      async () => {
        const all = await rows(id);
        return all.every((r) => r.status !== 'pending' && r.status !== 'sending') ? all : null;
      },
      10_000,
      'every SMS settled',
    );
    expect(settled.map((r) => [r.template, r.status])).toEqual([
      ['studio-suspended', 'sent'],
      ['overdue-reminder', 'sent'],
      ['studio-release-warning', 'superseded'],
      ['overdue-reminder', 'superseded'],
      ['resumed', 'sent'],
    ]);
    expect(settled[2]?.last_error).toBe(
      'release cancelled: overdue episode 1 ended before it was sent',
    );
    // The customer learned of the studio suspension, so the resume notice goes.
    await waitFor(() => smsTo(phone).length === 3, 15_000, 'resume SMS');
    await new Promise((r) => setTimeout(r, 300));
    expect(smsTo(phone)).toHaveLength(3);
  });
});
