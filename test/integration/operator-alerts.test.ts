import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../src/adapters/clock/clock';
import { createNotifyPorts } from '../../src/adapters/notify/index';
import { OperatorAlerts, OperatorMonitor } from '../../src/adapters/notify/operator-alerts';
import { SCHEDULER_IDS } from '../../src/daemon';
import { startHarness, TEST_REDIS_URL, waitFor, type Harness } from '../support/daemon';
import { createSmtpSink, type SmtpSink } from '../support/smtp-sink';

/** Operator alerts reach the operators' inbox, once per interval, across daemons. */

let h: Harness;
let sink: SmtpSink;

beforeAll(async () => {
  sink = await createSmtpSink();
  h = await startHarness({
    SMTP_URL: sink.url,
    MAIL_FROM: 'overdue-worker <alerts@example.com>',
    OPERATOR_EMAILS: 'oncall@example.com',
    OPERATOR_ALERT_INTERVAL: '1h',
    SCAN_INTERVAL: '1m',
  });
});

afterAll(async () => {
  await h?.stop();
  await sink?.close();
});

describe('operator alerts', () => {
  it('jobs that keep failing raise an alert to the operators', async () => {
    await h.daemon.monitor.check(); // baseline of failed jobs per queue
    h.cp.script.push(...Array.from({ length: 10 }, () => 400));
    const sql = h.t.raw;
    await sql.begin(async (tx) => {
      for (let i = 0; i < 10; i += 1) {
        await tx`insert into accounts (id, currency) values (${`alert-${i}`}, 'USD')`;
        await tx`insert into services (id, account_id, kind) values (${`alert-${i}-s`}, ${`alert-${i}`}, 'streaming')`;
        await tx`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
                 values (${`alert-${i}-b`}, ${`alert-${i}`}, 'live', 99999, now() - interval '2 days', now() - interval '1 hour')`;
      }
    });
    await waitFor(
      async () =>
        ((await h.daemon.ctx.queues.byName.effects.getJobCounts('failed')).failed ?? 0) >= 10,
      10_000,
      'ten failed effects',
    );
    expect(await h.daemon.monitor.check()).toEqual(['jobs-failing-effects']);
    await sink.waitFor(1, 5_000);
    expect(sink.messages[0]?.subject).toContain('jobs-failing-effects');
    const to = sink.messages[0]?.to;
    expect(to && !Array.isArray(to) ? to.text : '').toBe('oncall@example.com');
  });

  it('a scheduler that has not fired for two intervals raises an alert, once per interval', async () => {
    const scheduler = await h.daemon.ctx.queues.byName.scan.getJobScheduler(SCHEDULER_IDS.balance);
    const clock = manualClock(new Date((scheduler?.next ?? Date.now()) + 3 * 60_000));
    const redis = new Redis(TEST_REDIS_URL);
    const ports = createNotifyPorts(h.config, pino({ level: 'silent' }));
    try {
      const monitor = new OperatorMonitor(
        new OperatorAlerts(
          ports,
          redis,
          { ...h.config.notify.operators, from: h.config.mail.from, prefix: `${h.prefix}-other` },
          clock,
          pino({ level: 'silent' }),
        ),
        h.daemon.ctx.queues,
        [SCHEDULER_IDS.balance],
        clock,
        { failedJobs: 1_000, providerFailures: 5 },
      );
      const before = sink.accepted();
      expect(await monitor.check()).toEqual(['scheduler-stalled-balance-scan']);
      expect(sink.accepted()).toBe(before + 1);
      expect(sink.messages.at(-1)?.subject).toContain('scheduler-stalled-balance-scan');
      // Within the interval the same alert is not sent again, by this daemon or another.
      expect(await monitor.check()).toEqual([]);
      expect(sink.accepted()).toBe(before + 1);
    } finally {
      await ports.close();
      redis.disconnect();
    }
  });
});
