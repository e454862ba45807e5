import type { Redis } from 'ioredis';
import type { Channel } from '../../domain/snapshot';
import type { Logger } from '../../logger';
import { renderMessage } from '../../notify/templates';
import type { Clock } from '../clock/clock';
import type { QueueSet } from '../queue/queues';
import type { NotifyPorts, SendOutcome } from './ports';
import { messageIdFor } from './ports';

/**
 * Alerts to the operators (OPERATOR_EMAILS / OPERATOR_PHONES) when the daemon needs a person:
 * jobs keep failing, a provider keeps failing, or a scheduler has not fired for two intervals.
 *
 * Each alert key is sent at most once per OPERATOR_ALERT_INTERVAL across every daemon sharing the
 * Redis (a `SET NX PX` claim), directly through the mail and SMS ports: an alert about a broken
 * pipeline must not wait in that pipeline.
 */

export interface OperatorAlertSettings {
  readonly emails: readonly string[];
  readonly phones: readonly string[];
  readonly alertIntervalMs: number;
  readonly from: string;
  readonly prefix: string;
}

export class OperatorAlerts {
  constructor(
    private readonly ports: NotifyPorts,
    private readonly redis: Redis,
    private readonly settings: OperatorAlertSettings,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Sends the alert unless the same key went out within the interval; true when sent. */
  async raise(alert: string, summary: string, detail?: string): Promise<boolean> {
    const { emails, phones, alertIntervalMs, prefix } = this.settings;
    this.logger.warn({ alert, summary }, 'operator alert');
    if (emails.length === 0 && phones.length === 0) return false;
    const claimed = await this.redis.set(
      `${prefix}:operator-alert:${alert}`,
      String(this.clock.now().getTime()),
      'PX',
      alertIntervalMs,
      'NX',
    );
    if (claimed !== 'OK') return false;
    const at = this.clock.now();
    const message = renderMessage({
      template: 'operator-alert',
      locale: 'en',
      params: { alert, summary, ...(detail ? { detail } : {}), at: at.toISOString() },
      timeZone: 'UTC',
      topUpUrl: null,
    });
    const key = `operator-alert-${alert}-${at.getTime()}`;
    const outcomes: SendOutcome[] = [];
    for (const to of emails) {
      outcomes.push(
        await this.ports.mail.send({
          to,
          subject: message.subject,
          text: message.text,
          html: message.html,
          messageId: messageIdFor(key, this.settings.from),
          key,
          language: 'en',
        }),
      );
    }
    for (const to of phones) {
      outcomes.push(await this.ports.sms.send({ to, body: message.sms, key }, null));
    }
    const failed = outcomes.filter((o) => !o.ok).length;
    if (failed > 0) this.logger.error({ alert, failed }, 'operator alert not delivered everywhere');
    return failed < outcomes.length;
  }
}

export interface MonitorThresholds {
  /** New failed jobs in one queue within one check that count as "keep failing". */
  readonly failedJobs: number;
  /** Consecutive provider failures on one channel that count as "keeps failing". */
  readonly providerFailures: number;
}

/**
 * Watches the queues, the schedulers and the providers' outcomes, and raises operator alerts.
 * `check()` runs on a timer in the daemon; `recordOutcome` is the sender's hook.
 */
export class OperatorMonitor {
  private lastFailed = new Map<string, number>();
  private streak: Record<Channel, number> = { email: 0, sms: 0 };

  constructor(
    private readonly alerts: OperatorAlerts,
    private readonly queues: QueueSet,
    private readonly schedulers: readonly string[],
    private readonly clock: Clock,
    private readonly thresholds: MonitorThresholds,
  ) {}

  recordOutcome(channel: Channel, outcome: SendOutcome): void {
    if (outcome.ok) {
      this.streak[channel] = 0;
      return;
    }
    this.streak[channel] += 1;
    if (this.streak[channel] === this.thresholds.providerFailures) {
      void this.alerts
        .raise(
          `provider-failing-${channel}`,
          `${this.streak[channel]} ${channel} sends in a row failed`,
          `Last error: ${outcome.code}`,
        )
        .catch(() => undefined);
    }
  }

  async check(): Promise<string[]> {
    const raised: string[] = [];
    for (const [name, queue] of Object.entries(this.queues.byName)) {
      const counts = await queue.getJobCounts('failed');
      const failed = counts.failed ?? 0;
      const before = this.lastFailed.get(name);
      this.lastFailed.set(name, failed);
      if (before !== undefined && failed - before >= this.thresholds.failedJobs) {
        const alert = `jobs-failing-${name}`;
        if (
          await this.alerts.raise(
            alert,
            `${failed - before} ${name} jobs failed since the last check`,
          )
        ) {
          raised.push(alert);
        }
      }
    }
    const now = this.clock.now().getTime();
    for (const id of this.schedulers) {
      const scheduler = await this.queues.byName.scan.getJobScheduler(id);
      const every = scheduler?.every;
      const next = scheduler?.next;
      if (every === undefined || next === undefined) continue;
      if (now > next + 2 * every) {
        const alert = `scheduler-stalled-${id}`;
        const late = Math.round((now - next) / 1000);
        if (
          await this.alerts.raise(
            alert,
            `scheduler ${id} has not fired for ${late} s (every ${every / 1000} s)`,
          )
        ) {
          raised.push(alert);
        }
      }
    }
    return raised;
  }
}
