import { expect } from 'vitest';
import { twilioError } from '../support/fake-twilio';
import { describeFault, envInt, report, seedOverdue, sleep } from './harness';

/**
 * Scenario 4: the SMTP server is down for FAULTS_SMTP_DOWN_MS (default 30 s; the issue's minute
 * is 60000) and comes back on the same port, while the SMS API answers 429 and 500 in bursts.
 * Every message is delivered once after recovery. Then permanent errors (Twilio 21211 / 21610,
 * SMTP 550 on RCPT) fail the message once and fall back once to the other channel.
 */

const ACCOUNTS = envInt('FAULTS_PROVIDER_ACCOUNTS', 200);
const SMTP_DOWN_MS = envInt('FAULTS_SMTP_DOWN_MS', 60_000);

describeFault(
  {
    title: `providers failing (${ACCOUNTS} accounts, SMTP down ${SMTP_DOWN_MS} ms)`,
    test: 'delivers every message once after recovery and falls back once on permanent errors',
    env: { SCAN_INTERVAL: '10s', NOTIFY_TIMEOUT: '3s' },
  },
  async (w) => {
    const started = Date.now();
    await w.stopSmtp();
    w.spawn();
    w.spawn();
    await seedOverdue(w.raw, { prefix: 'm', count: ACCOUNTS });
    // Bursts of 429 and 500 from the SMS API while the SMTP server is away.
    let bursts = 0;
    const burstsDone = (async () => {
      for (let i = 0; i < 5; i += 1) {
        w.twilio.script(i % 2 === 0 ? twilioError(20429) : twilioError(30001), 25);
        bursts += 25;
        await sleep(Math.min(5_000, SMTP_DOWN_MS / 5));
      }
    })();
    await sleep(SMTP_DOWN_MS);
    await burstsDone;
    // The outage ends for both providers: SMS errors scripted for it and not used by then (the
    // senders retry with backoff, so the last bursts outnumber the messages still to send)
    // would otherwise meet only the few stragglers, retry after retry, past the settle window.
    const smsErrorsUnused = w.twilio.clearScript();
    const smtpBackAt = Date.now();
    await w.startSmtp();
    await w.settle(300_000, async () => {
      const [row] = await w.raw<{ n: string }[]>`
        select count(*) as n from notifications where status = 'sent'`;
      return Number(row?.n) === 2 * ACCOUNTS;
    });
    const recoveredMs = Date.now() - smtpBackAt;
    const transient = await w.check();
    // Errors scripted but not used by the first phase must not hit the next one.
    w.twilio.clearScript();

    // Permanent errors, one kind at a time (the fakes' scripts apply to the next requests).
    const permanent = async (
      prefix: string,
      channels: { notifyEmail?: boolean; notifySms?: boolean },
      fail: () => void,
    ) => {
      fail();
      const ids = await seedOverdue(w.raw, { prefix, count: 3, ...channels });
      await w.settle(120_000, async () => {
        const [row] = await w.raw<{ n: string }[]>`
          select count(*) as n from notifications where account_id like ${`${prefix}-%`} and dedupe_key like '%-fallback'`;
        return Number(row?.n) === ids.length;
      });
      return w.raw<{ account_id: string; channel: string; status: string; key: string }[]>`
        select account_id, channel, status, dedupe_key as key from notifications
         where account_id like ${`${prefix}-%`} order by id`;
    };
    // SMS only; the number is invalid (21211) or unsubscribed (21610): fall back to email.
    const smsBad = await permanent('sb', { notifyEmail: false }, () => {
      w.twilio.script(twilioError(21211), 2);
      w.twilio.script(twilioError(21610), 1);
    });
    // Email only; the address is refused (550 on RCPT): fall back to SMS.
    const mailBad = await permanent('eb', { notifySms: false }, () =>
      w.smtp.failNext({ stage: 'rcpt', code: 550, message: '5.1.1 no such user' }, 3),
    );
    const marks = await w.raw<{ id: string; sms_opted_out: boolean; email_bounced: boolean }[]>`
      select id, sms_opted_out, email_bounced from accounts where id like 'sb-%' or id like 'eb-%' order by id`;
    const inv = await w.check();
    report('providers', {
      accounts: ACCOUNTS,
      smtpDownMs: SMTP_DOWN_MS,
      smsErrorsScripted: bursts,
      smsErrorsUnused,
      recoveredAfterSmtpBackMs: recoveredMs,
      transient: { ...transient },
      permanent: {
        sms: smsBad.map((n) => `${n.channel}:${n.status}`),
        email: mailBad.map((n) => `${n.channel}:${n.status}`),
        marks: marks.map(
          (m) => `${m.id}:${m.sms_opted_out ? 'opted-out' : ''}${m.email_bounced ? 'bounced' : ''}`,
        ),
      },
      totalMs: Date.now() - started,
      ...inv,
    });
    expect(transient.problems).toEqual([]);
    expect(transient.failedNotifications).toBe(0);
    expect(transient.emails).toBe(ACCOUNTS);
    expect(transient.sms).toBe(ACCOUNTS);
    expect(transient.smtpRedelivered).toBe(0);
    // One failed message and one fallback per account, nothing more.
    for (const rows of [smsBad, mailBad]) {
      const byAccount = new Map<string, string[]>();
      for (const r of rows)
        byAccount.set(r.account_id, [
          ...(byAccount.get(r.account_id) ?? []),
          `${r.channel}:${r.status}`,
        ]);
      expect(byAccount.size).toBe(3);
      for (const list of byAccount.values()) expect(list).toHaveLength(2);
    }
    // The first channel failed for all three accounts, the fallback was sent for all three.
    const statuses = (rows: typeof smsBad, channel: string) =>
      rows.filter((n) => n.channel === channel).map((n) => n.status);
    expect(statuses(smsBad, 'sms')).toEqual(['failed', 'failed', 'failed']);
    expect(statuses(smsBad, 'email')).toEqual(['sent', 'sent', 'sent']);
    expect(statuses(mailBad, 'email')).toEqual(['failed', 'failed', 'failed']);
    expect(statuses(mailBad, 'sms')).toEqual(['sent', 'sent', 'sent']);
    expect(marks.filter((m) => m.sms_opted_out)).toHaveLength(1);
    expect(marks.filter((m) => m.email_bounced)).toHaveLength(3);
    expect(inv.problems).toEqual([]);
  },
);
