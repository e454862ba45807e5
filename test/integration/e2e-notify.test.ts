import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

/**
 * From a billing write to the customer's inbox: the trigger NOTIFYs, the daemon evaluates,
 * writes notification and outbox rows, the relay queues them per channel, and the senders
 * deliver to a real SMTP server and a fake Twilio API on loopback — once each.
 */

let h: NotifyHarness;

beforeAll(async () => {
  h = await startNotifyHarness();
});

afterAll(async () => {
  await h?.stop();
});

describe('notifications end to end', () => {
  it('a suspension and the resume after payment each reach the customer once per channel', async () => {
    const id = 'e2e-1';
    await h.t.raw`insert into accounts (id, currency, locale, email, phone, available_balance_minor)
                  values (${id}, 'CNY', 'zh-CN', 'owner@example.com', '+8613800000000', 1000000)`;
    await h.t
      .raw`insert into services (id, account_id, kind) values ('e2e-1-s', ${id}, 'streaming')`;
    await h.t.raw`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
                  values ('e2e-1-b', ${id}, 'oss', 888800, now() - interval '2 days', now() - interval '1 hour')`;
    await h.sink.waitFor(1, 10_000);
    await waitFor(() => h.twilio.messages.length >= 1, 10_000, 'suspension SMS');
    const mail = h.sink.messages[0];
    expect(mail?.to && 'text' in mail.to ? mail.to.text : '').toContain('owner@example.com');
    expect(mail?.text).toContain('8,888.00');
    expect(h.twilio.messages[0]?.to).toBe('+8613800000000');

    await h.t.raw`update bills set paid_minor = amount_minor, status = 'paid' where id = 'e2e-1-b'`;
    await h.sink.waitFor(2, 10_000);
    await waitFor(() => h.twilio.messages.length >= 2, 10_000, 'resume SMS');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(h.sink.accepted()).toBe(2);
    expect(h.sink.duplicates()).toBe(0);
    expect(h.twilio.messages).toHaveLength(2);
    expect(h.twilio.duplicates()).toBe(0);
    const rows = await h.t.raw<{ template: string; channel: string; status: string }[]>`
      select template, channel, status from notifications where account_id = ${id} order by id`;
    expect(rows.map((r) => `${r.template}/${r.channel}/${r.status}`)).toEqual([
      'suspended/email/sent',
      'suspended/sms/sent',
      'resumed/email/sent',
      'resumed/sms/sent',
    ]);
    const outbox = await h.t.raw<{ status: string }[]>`
      select status from outbox where account_id = ${id} and kind = 'notify'`;
    expect(outbox.every((r) => r.status === 'done')).toBe(true);
  });
});
