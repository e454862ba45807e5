import { describe, expect, it } from 'vitest';
import type { Job } from 'bullmq';
import {
  notifyBackoffStrategy,
  notifyQueueNameFor,
  notifyWorkerLimiter,
} from '../../src/adapters/queue/notify-wiring';
import { earliestSend } from '../../src/notify/send-rules';
import { messageIdFor } from '../../src/adapters/notify/ports';
import { classifySmtpError } from '../../src/adapters/notify/smtp';
import { classifyTwilioError } from '../../src/adapters/notify/twilio';
import { loadConfig, type Config } from '../../src/config';

const QUIET = { startMinute: 22 * 60, endMinute: 8 * 60 };

describe('quiet hours for SMS (22:00–08:00 local), DST-correct', () => {
  const cases: {
    name: string;
    zone: string;
    now: string;
    expected: string;
    quiet?: typeof QUIET;
  }[] = [
    {
      name: 'New York, day: at once',
      zone: 'America/New_York',
      now: '2026-03-09T15:00:00Z',
      expected: '2026-03-09T15:00:00.000Z',
    },
    {
      name: 'New York, spring-forward night: 08:00 EDT (UTC-4), not 08:00 EST',
      zone: 'America/New_York',
      now: '2026-03-08T03:30:00Z', // 22:30 EST on Mar 7
      expected: '2026-03-08T12:00:00.000Z',
    },
    {
      name: 'New York, fall-back night: 08:00 EST (UTC-5), not 08:00 EDT',
      zone: 'America/New_York',
      now: '2026-11-01T02:30:00Z', // 22:30 EDT on Oct 31
      expected: '2026-11-01T13:00:00.000Z',
    },
    {
      name: 'New York, inside the repeated hour of the fall-back night',
      zone: 'America/New_York',
      now: '2026-11-01T06:30:00Z', // 01:30 EST (the second 01:30)
      expected: '2026-11-01T13:00:00.000Z',
    },
    {
      name: 'London, spring-forward night',
      zone: 'Europe/London',
      now: '2026-03-28T23:00:00Z', // 23:00 GMT
      expected: '2026-03-29T07:00:00.000Z', // 08:00 BST
    },
    {
      name: 'London, fall-back night',
      zone: 'Europe/London',
      now: '2026-10-24T21:30:00Z', // 22:30 BST
      expected: '2026-10-25T08:00:00.000Z', // 08:00 GMT
    },
    {
      name: 'quiet end inside the skipped hour moves past the gap',
      zone: 'America/New_York',
      now: '2026-03-08T04:00:00Z', // 23:00 EST on Mar 7
      quiet: { startMinute: 22 * 60, endMinute: 2 * 60 + 30 }, // ends 02:30, which does not exist
      expected: '2026-03-08T07:30:00.000Z', // 03:30 EDT
    },
    {
      name: 'Shanghai (no DST), just before the end',
      zone: 'Asia/Shanghai',
      now: '2026-03-08T23:59:00Z', // 07:59
      expected: '2026-03-09T00:00:00.000Z',
    },
  ];
  it.each(cases)('$name', ({ zone, now, expected, quiet }) => {
    const at = new Date(now);
    expect(earliestSend('sms', at, at, zone, quiet ?? QUIET).toISOString()).toBe(expected);
  });

  it('email goes at once even at night', () => {
    const night = new Date('2026-03-08T03:30:00Z');
    expect(earliestSend('email', night, night, 'America/New_York', QUIET)).toEqual(night);
  });

  it('a later not-before wins, and is itself moved out of quiet hours for SMS', () => {
    const now = new Date('2026-03-09T15:00:00Z');
    const notBefore = new Date('2026-03-10T03:00:00Z'); // 23:00 EDT
    expect(earliestSend('email', notBefore, now, 'America/New_York', QUIET)).toEqual(notBefore);
    expect(earliestSend('sms', notBefore, now, 'America/New_York', QUIET).toISOString()).toBe(
      '2026-03-10T12:00:00.000Z',
    );
  });
});

describe('retry backoff', () => {
  const job = (delay: number) =>
    ({ opts: { backoff: { type: 'notify-jitter', delay } } }) as unknown as Job;
  it.each([
    [1, 500, 1_000],
    [2, 1_000, 2_000],
    [4, 4_000, 8_000],
    [20, 60_000, 120_000],
  ])('attempt %i waits between %i and %i ms (exponential, equal jitter, capped)', (n, lo, hi) => {
    for (let i = 0; i < 200; i += 1) {
      const ms = notifyBackoffStrategy(n, 'notify-jitter', new Error('x'), job(1_000));
      expect(ms).toBeGreaterThanOrEqual(lo);
      expect(ms).toBeLessThanOrEqual(hi);
    }
  });

  it('is jittered (a burst does not retry in lockstep)', () => {
    const values = new Set(
      Array.from({ length: 50 }, () =>
        notifyBackoffStrategy(3, 'notify-jitter', undefined, job(1_000)),
      ),
    );
    expect(values.size).toBeGreaterThan(10);
  });
});

describe('queues and limits', () => {
  const config = (env: Record<string, string>): Config => {
    const r = loadConfig(env);
    if (!r.ok) throw new Error('bad config');
    return r.config;
  };
  it('one queue per channel, each with its own limiter from config', () => {
    expect(notifyQueueNameFor('email')).toBe('notify-email');
    expect(notifyQueueNameFor('sms')).toBe('notify-sms');
    const c = config({ EMAIL_RATE_LIMIT: '200', SMS_RATE_LIMIT: 'off' });
    expect(notifyWorkerLimiter(c, 'email')).toEqual({ max: 200, duration: 1_000 });
    expect(notifyWorkerLimiter(c, 'sms')).toBeUndefined();
    expect(notifyWorkerLimiter(config({}), 'sms')).toEqual({ max: 10, duration: 1_000 });
  });

  it('rate settings are validated', () => {
    const r = loadConfig({
      EMAIL_RATE_LIMIT: '0',
      SMS_RATE_LIMIT: 'fast',
      DKIM_DOMAIN: 'example.com',
    });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.problems.map((p) => p.name)).toEqual([
        'EMAIL_RATE_LIMIT',
        'SMS_RATE_LIMIT',
        'DKIM_SELECTOR',
        'DKIM_PRIVATE_KEY_FILE',
      ]);
    }
  });

  it('Message-ID derives from the dedupe key and the sender domain', () => {
    expect(messageIdFor('susp-v1-a-1-email', 'Billing <billing@example.com>')).toBe(
      '<susp-v1-a-1-email@example.com>',
    );
    expect(messageIdFor('k', 'no-reply@mail.example.org')).toBe('<k@mail.example.org>');
  });
});

describe('provider errors say whether a retry helps', () => {
  const smtp: {
    name: string;
    err: object;
    permanent: boolean;
    ambiguous: boolean;
    mark?: string;
  }[] = [
    {
      name: '421 try later',
      err: { responseCode: 421, command: 'RCPT TO', message: 'x' },
      permanent: false,
      ambiguous: false,
    },
    {
      name: '451 at DATA',
      err: { responseCode: 451, command: 'DATA', message: 'x' },
      permanent: false,
      ambiguous: false,
    },
    {
      name: '550 unknown user at RCPT',
      err: { responseCode: 550, command: 'RCPT TO', message: 'x' },
      permanent: true,
      ambiguous: false,
      mark: 'email-bounced',
    },
    {
      name: '554 content rejected at DATA',
      err: { responseCode: 554, command: 'DATA', response: '554 5.7.1 spam', message: 'x' },
      permanent: true,
      ambiguous: false,
    },
    {
      name: '550 5.1.1 at DATA',
      err: { responseCode: 550, command: 'DATA', response: '550 5.1.1 no such user', message: 'x' },
      permanent: true,
      ambiguous: false,
      mark: 'email-bounced',
    },
    {
      name: 'timeout',
      err: { code: 'ETIMEDOUT', message: 'Timeout' },
      permanent: false,
      ambiguous: true,
    },
    {
      name: 'refused',
      err: { code: 'ESOCKET', message: 'connect ECONNREFUSED 127.0.0.1:1' },
      permanent: false,
      ambiguous: false,
    },
  ];
  it.each(smtp)('SMTP $name', ({ err, permanent, ambiguous, mark }) => {
    const out = classifySmtpError(err as Error);
    expect(out).toMatchObject({ ok: false, permanent, ambiguous });
    expect(out.ok ? undefined : out.mark).toBe(mark);
  });

  const tw: { name: string; err: object; permanent: boolean; ambiguous: boolean; mark?: string }[] =
    [
      {
        name: '20429 too many requests',
        err: { status: 429, code: 20429 },
        permanent: false,
        ambiguous: false,
      },
      {
        name: '500 server error',
        err: { status: 500, code: 20500 },
        permanent: false,
        ambiguous: false,
      },
      { name: '503 without body', err: { status: 503 }, permanent: false, ambiguous: false },
      {
        name: '21610 unsubscribed',
        err: { status: 400, code: 21610 },
        permanent: true,
        ambiguous: false,
        mark: 'sms-opted-out',
      },
      {
        name: '21211 invalid number',
        err: { status: 400, code: 21211 },
        permanent: true,
        ambiguous: false,
      },
      {
        name: '21612 unreachable',
        err: { status: 400, code: 21612 },
        permanent: true,
        ambiguous: false,
      },
      {
        name: '21614 not mobile',
        err: { status: 400, code: 21614 },
        permanent: true,
        ambiguous: false,
      },
      {
        name: '21408 region',
        err: { status: 400, code: 21408 },
        permanent: true,
        ambiguous: false,
      },
      {
        name: '20003 bad credentials (ours to fix)',
        err: { status: 401, code: 20003 },
        permanent: false,
        ambiguous: false,
      },
      {
        name: 'timeout',
        err: { code: 'ECONNABORTED', message: 'timeout of 1000ms exceeded' },
        permanent: false,
        ambiguous: true,
      },
      {
        name: 'reset',
        err: { code: 'ECONNRESET', message: 'socket hang up' },
        permanent: false,
        ambiguous: true,
      },
      {
        name: 'refused',
        err: { code: 'ECONNREFUSED', message: 'connect' },
        permanent: false,
        ambiguous: false,
      },
    ];
  it.each(tw)('Twilio $name', ({ err, permanent, ambiguous, mark }) => {
    const out = classifyTwilioError(err);
    expect(out).toMatchObject({ ok: false, permanent, ambiguous });
    expect(out.ok ? undefined : out.mark).toBe(mark);
  });
});
