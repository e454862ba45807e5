import { randomUUID } from 'node:crypto';
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Clock } from '../src/adapters/clock/clock';
import type { Db } from '../src/adapters/db/client';
import { createNotificationBatches } from '../src/adapters/db/notification-batches';
import {
  failNotification,
  recheckForSend,
  releaseAfterTransient,
} from '../src/adapters/db/notification-store';
import { settleOutbox, type FinalStatus } from '../src/adapters/db/outbox-store';
import { deliver } from '../src/adapters/notify/deliver';
import type { NotifyPorts, SendOutcome } from '../src/adapters/notify/index';
import { InvalidPayloadError, parsePayload } from '../src/adapters/queue/catalog';
import type { Config } from '../src/config';
import type { Channel } from '../src/domain/snapshot';
import { childLogger, type Logger } from '../src/logger';
import {
  contactRefusal,
  earliestSend,
  givenUp,
  isFinalNotification,
  outboxStatusOf,
  PermanentFailure,
  renderOrFail,
} from '../src/notify/send-rules';
import { toJobError } from './context';

/**
 * send-notification: delivers one `notifications` row, once (the row, not Redis, is the
 * authority): re-checked while pending, claimed under a lease, handed to the provider, recorded
 * `sent` (src/adapters/db/notification-store.ts). Transient errors → a plain Error (BullMQ
 * retries); permanent or given up → failed with one fallback, and UnrecoverableError. One job
 * per message; the load, claim and record of the jobs running at the same time share statements
 * (src/adapters/db/notification-batches.ts).
 */
export interface SendNotificationDeps {
  readonly db: Db;
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly ports: NotifyPorts;
  /** Asks the outbox relay to run now (after a fallback row was committed). */
  readonly requestRelay: () => void;
  /** Told about each provider outcome (operator alerts on a provider that keeps failing). */
  readonly onOutcome?: (channel: Channel, outcome: SendOutcome) => void;
}

/** How long a notice waits for an earlier one of its episode on its channel, ms. */
const ORDER_HOLD_MS = 1_000;

export function createSendNotificationHandler(
  deps: SendNotificationDeps,
): (job: Job, token?: string) => Promise<void> {
  const { db, config, clock, ports } = deps;
  const logger = childLogger(deps.logger, 'send-notification');
  const leaseMs = config.notify.timeoutMs + 20_000; // an attempt's lease: NOTIFY_TIMEOUT + 20 s
  const settle = (key: string, status: FinalStatus, reason: string | null) =>
    settleOutbox(db, key, { status, reason });
  const batches = createNotificationBatches(db, config.rules.lowBalanceThresholdMinor);

  // What is thrown becomes the job's failedReason: described without personal data.
  return async function sendNotification(job: Job, token?: string): Promise<void> {
    try {
      await attempt(job, token);
    } catch (error) {
      throw toJobError(error);
    }
  };

  /** Moves the job to delayed (BullMQ's signal), or fails the attempt when run without a token. */
  async function later(job: Job, token: string | undefined, at: number, why: string) {
    if (token === undefined) throw new Error(why);
    await job.moveToDelayed(at, token);
    throw new DelayedError();
  }

  async function attempt(job: Job, token: string | undefined): Promise<void> {
    let outboxKey: string;
    try {
      ({ outboxKey } = parsePayload('send-notification', job.data));
    } catch (error) {
      if (error instanceof InvalidPayloadError) throw new UnrecoverableError(error.message);
      throw error;
    }
    const ctx = { key: outboxKey, jobId: job.id, attempt: job.attemptsMade + 1 };
    const loaded = await batches.load(outboxKey);
    if (loaded === null) {
      await settle(outboxKey, 'failed', 'no notification row with this key');
      throw new UnrecoverableError(`no notification with dedupe key ${outboxKey}`);
    }
    const { row, contact, recheck } = loaded;
    if (isFinalNotification(row.status)) {
      await settle(outboxKey, outboxStatusOf(row.status), null);
      logger.debug({ ...ctx, status: row.status }, 'already final; nothing sent');
      return;
    }
    const now = clock.now();
    const zone = contact?.timeZone ?? 'UTC';
    const channel = row.channel;
    const at = earliestSend(channel, row.notBefore, now, zone, config.rules.quietHours);
    if (at.getTime() > now.getTime()) {
      logger.info({ ...ctx, notBefore: at.toISOString() }, 'quiet hours: delayed');
      return later(job, token, at.getTime(), `not before ${at.toISOString()}`);
    }
    // Still true? Re-checked on every attempt on a pending row (a `sending` row may be at the
    // provider already: it is reconciled, not superseded).
    if (row.status === 'pending') {
      const { result, others } = await recheckForSend(db, row.id, recheck);
      for (const o of others) logger.info({ ...ctx, other: o.key, reason: o.reason }, 'superseded');
      if (result.kind === 'superseded') {
        logger.info({ ...ctx, template: row.template, reason: result.reason }, 'superseded');
        return;
      }
      if (result.kind !== 'send') {
        return later(job, token, Date.now() + ORDER_HOLD_MS, 'held for an earlier notice');
      }
    }

    try {
      const refusal = contactRefusal(channel, contact);
      if (refusal !== null) throw refusal;
      const { template, locale, params } = row;
      const topUpUrl = config.notify.topUpUrl;
      const message = renderOrFail({ template, locale, params, timeZone: zone, topUpUrl });
      const claimToken = randomUUID();
      const claimedAt = Date.now();
      const claim = await batches.claim({ id: row.id, claimToken, now, leaseMs });
      if (claim.kind === 'final') {
        await settle(outboxKey, outboxStatusOf(claim.status), null);
        logger.debug({ ...ctx, status: claim.status }, 'finished elsewhere; nothing sent');
        return;
      }
      if (claim.kind === 'held' && claim.reason === 'mode') {
        logger.debug({ ...ctx }, 'held: enforcement mode not enforce, or messages paused');
        return later(job, token, claim.until.getTime(), 'held: mode not enforce, or paused');
      }
      if (claim.kind === 'held') {
        logger.info({ ...ctx, until: claim.until.toISOString() }, 'held by another attempt');
        const until = Math.max(claim.until.getTime(), Date.now()) + 1_000;
        return later(job, token, until, 'held by another attempt');
      }
      const { dedupeKey, recipient } = row;
      const { interrupted, firstAttemptAt } = claim;
      const delivery = {
        channel,
        recipient,
        dedupeKey,
        locale,
        message,
        interrupted,
        firstAttemptAt,
      };
      const opts = {
        mailFrom: config.mail.from,
        smsStatusCallbackUrl: config.notify.smsStatusCallbackUrl,
      };
      const outcome = await deliver(ports, delivery, opts, logger, ctx);
      deps.onOutcome?.(channel, outcome);
      if (outcome.ok) {
        // Recorded at once (with its outbox row), and waited for while the lease lasts: the
        // provider has the message now, so a retry must find it `sent` rather than send it again.
        // A delivery callback that came before this record was kept: it is applied then.
        const { provider, messageId } = outcome;
        const sent = { id: row.id, claimToken, provider, messageId };
        if (!(await batches.recordSent(sent, channel, claimedAt + leaseMs - 5_000))) {
          logger.warn({ ...ctx, channel }, 'lease lost before the send was recorded; not recorded');
          return;
        }
        logger.debug({ ...ctx, channel, provider }, 'sent');
        return;
      }
      if (outcome.permanent) throw new PermanentFailure(outcome.code, outcome.reason, outcome.mark);
      // An operator's retry starts the give-up clock again.
      const ageMs = now.getTime() - (row.retriedAt ?? row.createdAt).getTime();
      const attempts = job.opts.attempts ?? 1;
      const gaveUp = givenUp(outcome, ctx.attempt, attempts, ageMs, config.notify.giveUpAfterMs);
      if (gaveUp !== null) throw gaveUp;
      const error = `${outcome.code}: ${outcome.reason}`;
      await releaseAfterTransient(db, row.id, claimToken, outcome.ambiguous, error);
      logger.warn(
        { ...ctx, channel, code: outcome.code, ambiguous: outcome.ambiguous },
        'transient failure',
      );
      throw new Error(error);
    } catch (error) {
      if (!(error instanceof PermanentFailure)) throw error;
      const quiet = config.rules.quietHours;
      const fallback = await failNotification(db, row, contact ?? null, error, now, quiet);
      logger.warn(
        { ...ctx, channel, code: error.code, mark: error.mark, fallback },
        'permanent failure',
      );
      if (fallback !== null) deps.requestRelay();
      throw new UnrecoverableError(`${error.code}: ${error.message}`);
    }
  }
}
