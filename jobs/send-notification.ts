import { randomUUID } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { DelayedError, UnrecoverableError, type BackoffStrategy, type Job } from 'bullmq';
import type { Clock } from '../src/adapters/clock/clock';
import { queryRows, type Db, type Tx } from '../src/adapters/db/client';
import { appendEvent, insertNotification, insertOutbox } from '../src/adapters/db/daemon-writers';
import { loadNoticeRecheck, supersedeNotices } from '../src/adapters/db/notice-recheck';
import { settleOutbox } from '../src/adapters/db/outbox-store';
import { applyEarlyCallbacks } from '../src/adapters/db/sms-callback-store';
import { accounts, notifications } from '../src/adapters/db/schema';
import { messageIdFor, type NotifyPorts, type SendOutcome } from '../src/adapters/notify/index';
import { catalog, InvalidPayloadError, parsePayload } from '../src/adapters/queue/catalog';
import type { Config } from '../src/config';
import { checkNotice } from '../src/domain/notice-check';
import { nextSmsSendInstant } from '../src/domain/quiet-hours';
import type { QuietHours } from '../src/domain/rules';
import type { Channel } from '../src/domain/snapshot';
import { childLogger, type Logger } from '../src/logger';
import { toJobError } from './context';
import { renderMessage, TemplateError, type RenderedMessage } from '../src/notify/templates';

/**
 * send-notification: delivers one `notifications` row, once.
 *
 * The row's unique dedupe key is the authority, not Redis:
 * - final rows (sent, delivered, failed, undeliverable, superseded) are never sent again;
 * - a pending row is re-checked first: a notice no longer true (paid, topped up, release
 *   cancelled) is settled `superseded` with the reason, and a notice waits while an earlier one
 *   of its episode on its channel is unsettled (src/domain/notice-check.ts);
 * - the row is marked `sending` (and `sent_at` stamped with the first attempt's start) before the
 *   provider is called, and `sent` with the provider's id after, in one statement;
 * - that claim is a lease held by one attempt (a token and an expiry on the database's clock): a
 *   second job for the same row (a stalled job re-run while the first still works, another
 *   daemon) waits for the lease instead of sending too;
 * - an attempt that finds `sending` without a provider id was interrupted (timeout, crash,
 *   `kill -9`) after possibly handing the message over: for SMS it first looks the message up at
 *   the provider (recipient + exact body, created since the first attempt) and records it instead
 *   of sending again; for email it re-sends with the same Message-ID (derived from the dedupe
 *   key), which receiving systems use to drop the duplicate.
 * Errors: transient → a plain Error (BullMQ retries with `notifyBackoffStrategy`); permanent or
 * attempts exhausted → the reason is stored, the contact marked when the provider says so, one
 * fallback message queued on the other channel, and UnrecoverableError thrown.
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

export const FALLBACK_SUFFIX = '-fallback';
/** Backoff type to put in the jobs' options so BullMQ calls `notifyBackoffStrategy`. */
export const NOTIFY_BACKOFF_TYPE = 'notify-jitter';
/**
 * Longest wait between two attempts, ms: once a provider recovers, every waiting message goes
 * within this (their age, not their attempt count, decides when they give up).
 */
const MAX_BACKOFF_MS = 2 * 60_000;

const FINAL_STATUSES = ['sent', 'delivered', 'failed', 'undeliverable', 'superseded'] as const;
/** How long a notice waits for an earlier one of its episode on its channel to be settled, ms. */
const ORDER_HOLD_MS = 1_000;

// ---------------------------------------------------------------------------------------------
// Queue wiring the composition root uses.

/**
 * One queue per channel, because BullMQ limiters are per queue: the email and SMS rate limits
 * (held in Redis, so across every daemon) must not throttle each other.
 */
export function notifyQueueNameFor(channel: Channel): 'notify-email' | 'notify-sms' {
  return channel === 'email' ? 'notify-email' : 'notify-sms';
}

/** BullMQ Worker `limiter` for a channel's queue; undefined when the limit is 'off'. */
export function notifyWorkerLimiter(
  config: Config,
  channel: Channel,
): { max: number; duration: number } | undefined {
  const perSecond =
    channel === 'email' ? config.notify.emailRatePerSecond : config.notify.smsRatePerSecond;
  return perSecond === null ? undefined : { max: perSecond, duration: 1_000 };
}

/** Job options for a send-notification job (jobId = the outbox key, set by the relay). */
export function notifyJobOptions(): {
  attempts: number;
  backoff: { type: string; delay: number };
} {
  const entry = catalog['send-notification'];
  return {
    attempts: entry.attempts,
    backoff: { type: NOTIFY_BACKOFF_TYPE, delay: entry.backoffMs },
  };
}

/**
 * BullMQ `settings.backoffStrategy`: exponential from the job's backoff delay, with "equal
 * jitter" (half fixed, half random) so that a burst of 429s does not retry in lockstep, capped
 * at MAX_BACKOFF_MS. `attemptsMade` counts attempts already made (1 after the first failure).
 */
/**
 * Runs `write` until it succeeds, retrying failures (the database unreachable) with backoff up
 * to 2 s until `deadline` (epoch ms); then the last error is thrown.
 */
export async function persistWithin<T>(deadline: number, write: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await write();
    } catch (error) {
      const wait = Math.min(2_000, 100 * 2 ** attempt);
      if (Date.now() + wait > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

export const notifyBackoffStrategy = ((attemptsMade, _type, _err, job): number => {
  const base = (job?.opts.backoff as { delay?: number } | undefined)?.delay ?? 2_000;
  const exp = Math.min(MAX_BACKOFF_MS, base * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}) satisfies BackoffStrategy;

/** Earliest instant an SMS may go to an account (quiet hours), never before `notBefore`. */
export function earliestSend(
  channel: Channel,
  notBefore: Date,
  now: Date,
  zone: string,
  quiet: QuietHours,
): Date {
  const start = notBefore > now ? notBefore : now;
  return channel === 'sms' ? nextSmsSendInstant(start, zone, quiet) : start;
}

// ---------------------------------------------------------------------------------------------

type NotificationRow = typeof notifications.$inferSelect;
interface AccountContact {
  readonly timeZone: string;
  readonly email: string | null;
  readonly phone: string | null;
  readonly smsOptedOut: boolean;
  readonly emailBounced: boolean;
}

class PermanentFailure extends Error {
  constructor(
    readonly code: string,
    reason: string,
    readonly mark: 'email-bounced' | 'sms-opted-out' | null = null,
    /** False when the other channel cannot do better (bad template params). */
    readonly fallBack = true,
  ) {
    super(reason);
  }
}

export function createSendNotificationHandler(
  deps: SendNotificationDeps,
): (job: Job, token?: string) => Promise<void> {
  const { db, config, clock, ports } = deps;
  const logger = childLogger(deps.logger, 'send-notification');
  /**
   * A holder that has not finished by then is taken to be dead: its provider call is bounded by
   * NOTIFY_TIMEOUT, and 20 s more covers the row update on a loaded host.
   */
  const leaseMs = config.notify.timeoutMs + 20_000;

  // What is thrown becomes the job's failedReason and stacktrace: described without personal
  // data (a failed insert of the fallback carries the recipient among its parameters).
  return async function sendNotification(job: Job, token?: string): Promise<void> {
    try {
      await attempt(job, token);
    } catch (error) {
      throw toJobError(error);
    }
  };

  async function attempt(job: Job, token: string | undefined): Promise<void> {
    let outboxKey: string;
    try {
      ({ outboxKey } = parsePayload('send-notification', job.data));
    } catch (error) {
      if (error instanceof InvalidPayloadError) throw new UnrecoverableError(error.message);
      throw error;
    }
    // Bindings per call rather than a child logger per job: this runs ~1,000 times a second.
    const ctx = { key: outboxKey, jobId: job.id, attempt: job.attemptsMade + 1 };

    // One round trip: the row and the account's contact state (null when the account is gone).
    const [loaded] = await db
      .select({
        row: notifications,
        timeZone: accounts.timeZone,
        email: accounts.email,
        phone: accounts.phone,
        smsOptedOut: accounts.smsOptedOut,
        emailBounced: accounts.emailBounced,
      })
      .from(notifications)
      .leftJoin(accounts, eq(accounts.id, notifications.accountId))
      .where(eq(notifications.dedupeKey, outboxKey))
      .limit(1);
    if (loaded === undefined) {
      await markOutbox(db, outboxKey, 'failed', 'no notification row with this key');
      throw new UnrecoverableError(`no notification with dedupe key ${outboxKey}`);
    }
    const { row } = loaded;
    if ((FINAL_STATUSES as readonly string[]).includes(row.status)) {
      // Done before (a duplicate job, or a retry after the row update): settle the outbox only.
      await markOutbox(db, outboxKey, outboxStatusOf(row.status), null);
      logger.debug({ ...ctx, status: row.status }, 'already final; nothing sent');
      return;
    }
    const contact: AccountContact | undefined =
      loaded.timeZone === null
        ? undefined
        : {
            timeZone: loaded.timeZone,
            email: loaded.email,
            phone: loaded.phone,
            smsOptedOut: loaded.smsOptedOut ?? false,
            emailBounced: loaded.emailBounced ?? false,
          };

    const now = clock.now();
    const zone = contact?.timeZone ?? 'UTC';
    const channel = row.channel;
    const at = earliestSend(channel, row.notBefore, now, zone, config.rules.quietHours);
    if (at.getTime() > now.getTime()) {
      // Quiet hours (or a not-before in the future, e.g. a retry's backoff ran into the night).
      if (token === undefined) throw new Error(`not before ${at.toISOString()}`);
      logger.info({ ...ctx, notBefore: at.toISOString() }, 'quiet hours: delayed');
      await job.moveToDelayed(at.getTime(), token);
      throw new DelayedError();
    }

    // Still true? Re-checked on every attempt that would claim a pending row (a row left
    // `sending` may be at the provider already: it is reconciled, not superseded).
    if (row.status === 'pending') {
      const recheck = await recheckNotice(row, ctx);
      if (recheck === 'superseded') return;
      if (recheck !== 'send') {
        if (token === undefined) throw new Error('held for an earlier notice');
        await job.moveToDelayed(recheck.until, token);
        throw new DelayedError();
      }
    }

    try {
      if (contact === undefined) throw new PermanentFailure('no-account', 'account not found');
      if (channel === 'sms' && contact.smsOptedOut) {
        throw new PermanentFailure('opted-out', 'the number has opted out of SMS');
      }
      if (channel === 'email' && contact.emailBounced) {
        throw new PermanentFailure('bounced', 'the address is marked bounced');
      }
      let message: RenderedMessage;
      try {
        message = renderMessage({
          template: row.template,
          locale: row.locale,
          params: row.params,
          timeZone: zone,
          topUpUrl: config.notify.topUpUrl,
        });
      } catch (error) {
        if (error instanceof TemplateError) {
          throw new PermanentFailure('template', error.message, null, false);
        }
        throw error;
      }

      // Claim under a lease: pending → sending, or a `sending` row whose holder's lease ran out.
      // A final status wins; a live lease means another attempt is talking to the provider now.
      const claimToken = randomUUID();
      const claimedAt = Date.now();
      const claim = await claimRow(row.id, claimToken, now);
      if (claim.kind === 'final') {
        await markOutbox(db, outboxKey, outboxStatusOf(claim.status), null);
        logger.debug(
          { ...ctx, status: claim.status },
          'finished elsewhere meanwhile; nothing sent',
        );
        return;
      }
      if (claim.kind === 'held') {
        // Come back when the holder's lease ends (it has finished by then, or died).
        const at = Math.max(claim.until.getTime(), Date.now()) + 1_000;
        logger.info({ ...ctx, until: claim.until.toISOString() }, 'held by another attempt');
        if (token === undefined) throw new Error('held by another attempt');
        await job.moveToDelayed(at, token);
        throw new DelayedError();
      }
      const { firstAttemptAt, interrupted } = claim;
      const mine = and(
        eq(notifications.id, row.id),
        eq(notifications.status, 'sending'),
        eq(notifications.claimToken, claimToken),
      );

      const outcome = await deliver(row, message, interrupted, firstAttemptAt, ctx);
      deps.onOutcome?.(channel, outcome);

      if (outcome.ok) {
        // The row is sent, committed on its own first: the outbox update after it may wait for a
        // relay transaction that still holds the outbox row (the relay enqueues before it
        // commits), and a crash during that wait must not leave an accepted message `sending`,
        // which the retry would send again. A retry that finds it `sent` only settles the outbox.
        // The provider has the message now: while the lease lasts, a database that is briefly
        // away (a restart, a failover) is waited for rather than leaving the row for a retry
        // that would have to send again.
        await persistWithin(claimedAt + leaseMs - 5_000, () =>
          db
            .update(notifications)
            .set({
              status: 'sent',
              providerId: outcome.provider,
              messageId: outcome.messageId,
              lastError: null,
              claimExpiresAt: null,
            })
            .where(mine),
        );
        // A delivery callback that came before this update was kept: apply it now.
        if (channel === 'sms') {
          const early = await applyEarlyCallbacks(db, outcome.provider, [outcome.messageId]);
          if (early.length > 0)
            logger.info({ ...ctx, status: early[0]?.status }, 'early callback applied');
        }
        await markOutbox(db, outboxKey, 'done', null);
        logger.debug(
          { ...ctx, channel, provider: outcome.provider, template: row.template },
          'sent',
        );
        return;
      }

      if (outcome.permanent) throw new PermanentFailure(outcome.code, outcome.reason, outcome.mark);

      const attempts = job.opts.attempts ?? 1;
      const ageMs = now.getTime() - row.createdAt.getTime();
      if (job.attemptsMade + 1 >= attempts || ageMs >= config.notify.giveUpAfterMs) {
        throw new PermanentFailure(
          outcome.code,
          `gave up after ${job.attemptsMade + 1} attempts over ${Math.round(ageMs / 60_000)} min: ${outcome.reason}`,
        );
      }
      // Not accepted: the next attempt may send straight away. Possibly accepted: stay
      // `sending` so the next attempt reconciles first.
      await db
        .update(notifications)
        .set({
          status: outcome.ambiguous ? 'sending' : 'pending',
          lastError: `${outcome.code}: ${outcome.reason}`.slice(0, 1_000),
          // Released: the retry may take it at once (and reconciles first when ambiguous).
          claimExpiresAt: null,
        })
        .where(mine);
      logger.warn(
        { ...ctx, channel, code: outcome.code, ambiguous: outcome.ambiguous },
        'transient failure',
      );
      throw new Error(`${outcome.code}: ${outcome.reason}`);
    } catch (error) {
      if (!(error instanceof PermanentFailure)) throw error;
      const fallbackKey = await failPermanently(row, contact ?? null, error, now);
      logger.warn(
        { ...ctx, channel, code: error.code, mark: error.mark, fallback: fallbackKey },
        'permanent failure',
      );
      if (fallbackKey !== null) deps.requestRelay();
      throw new UnrecoverableError(`${error.code}: ${error.message}`);
    }
  }

  /**
   * The notice's condition at send time (src/domain/notice-check.ts), one read: settles it, and
   * pending notices of its episode that are no longer true, as superseded; or holds it while an
   * earlier notice of its episode on its channel is not settled yet.
   */
  async function recheckNotice(
    row: NotificationRow,
    ctx: Record<string, unknown>,
  ): Promise<'send' | 'superseded' | { until: number }> {
    const loaded = await loadNoticeRecheck(db, row.id, config.rules.lowBalanceThresholdMinor);
    // No account: the send path below fails the message with that reason.
    if (loaded === null || loaded.state === null) return 'send';
    const { verdict, supersedeOthers } = checkNotice(loaded.notice, loaded.siblings, loaded.state);
    const items = supersedeOthers.map((o) => ({ id: o.notice.id, reason: o.reason }));
    if (verdict.kind === 'supersede') items.push({ id: row.id, reason: verdict.reason });
    const done = await supersedeNotices(db, items);
    for (const o of supersedeOthers) {
      if (done.has(o.notice.id)) {
        logger.info({ ...ctx, other: o.notice.dedupeKey, reason: o.reason }, 'superseded');
      }
    }
    const hold = { until: Date.now() + ORDER_HOLD_MS };
    // A row that left `pending` meanwhile (claimed by its own job) changes the picture: look again.
    if (items.some((i) => !done.has(i.id))) return hold;
    if (verdict.kind === 'supersede') {
      logger.info({ ...ctx, template: row.template, reason: verdict.reason }, 'superseded');
      return 'superseded';
    }
    if (verdict.kind === 'hold') {
      logger.debug({ ...ctx, reason: verdict.reason }, 'held for an earlier notice');
      return hold;
    }
    return 'send';
  }

  /**
   * Takes the row for one attempt: sets it `sending` with this attempt's token and a lease on the
   * database's clock (so daemons on different hosts agree), and tells whether an earlier attempt
   * may have handed the message over already (the row was `sending` without a provider id).
   */
  async function claimRow(
    id: number,
    claimToken: string,
    now: Date,
  ): Promise<
    | { kind: 'claimed'; firstAttemptAt: Date; interrupted: boolean }
    | { kind: 'held'; until: Date }
    | { kind: 'final'; status: string }
  > {
    const [claimed] = await queryRows<{
      prev_status: string;
      message_id: string | null;
      sent_at: Date | string;
    }>(
      db,
      sql`with prev as (
            select id, status from notifications where id = ${id} for update
          )
          update notifications n
             set status = 'sending',
                 attempts = n.attempts + 1,
                 sent_at = coalesce(n.sent_at, ${now.toISOString()}::timestamptz),
                 claim_token = ${claimToken},
                 claim_expires_at = clock_timestamp() + ${leaseMs} * interval '1 millisecond',
                 updated_at = now()
            from prev
           where n.id = prev.id
             and (prev.status = 'pending'
                  or (prev.status = 'sending'
                      and (n.claim_expires_at is null or n.claim_expires_at < clock_timestamp())))
       returning prev.status as prev_status, n.message_id, n.sent_at`,
    );
    if (claimed !== undefined) {
      return {
        kind: 'claimed',
        firstAttemptAt: new Date(claimed.sent_at),
        interrupted: claimed.prev_status === 'sending' && claimed.message_id === null,
      };
    }
    const [current] = await queryRows<{ status: string; until: Date | string | null }>(
      db,
      sql`select status, claim_expires_at as until from notifications where id = ${id}`,
    );
    if (current === undefined) return { kind: 'final', status: 'failed' };
    if (current.status === 'sending' && current.until !== null) {
      return { kind: 'held', until: new Date(current.until) };
    }
    if ((FINAL_STATUSES as readonly string[]).includes(current.status)) {
      return { kind: 'final', status: current.status };
    }
    // Released between the two statements: take it on the next attempt.
    throw new Error(`notification ${id} changed while being claimed; retrying`);
  }

  async function deliver(
    row: NotificationRow,
    message: RenderedMessage,
    interrupted: boolean,
    firstAttemptAt: Date,
    ctx: Record<string, unknown>,
  ): Promise<SendOutcome> {
    if (row.channel === 'email') {
      // Nothing to look up over SMTP: the same Message-ID makes a re-send recognisable.
      return ports.mail.send({
        to: row.recipient,
        subject: message.subject,
        text: message.text,
        html: message.html,
        messageId: messageIdFor(row.dedupeKey, config.mail.from),
        key: row.dedupeKey,
        language: row.locale,
      });
    }
    if (interrupted) {
      // Throws (→ retry later) when the provider cannot be asked: never guess "not sent".
      const found = await ports.sms.find({
        to: row.recipient,
        body: message.sms,
        since: firstAttemptAt,
      });
      if (found !== null) {
        logger.info({ ...ctx, messageId: found }, 'reconciled: the provider already had this SMS');
        return { ok: true, provider: ports.sms.provider, messageId: found };
      }
    }
    return ports.sms.send(
      { to: row.recipient, body: message.sms, key: row.dedupeKey },
      config.notify.smsStatusCallbackUrl,
    );
  }

  /** Stores the failure, marks the contact, queues one fallback; returns its key or null. */
  async function failPermanently(
    row: NotificationRow,
    contact: AccountContact | null,
    failure: PermanentFailure,
    now: Date,
  ): Promise<string | null> {
    return db.transaction(async (tx) => {
      const reason = `${failure.code}: ${failure.message}`.slice(0, 1_000);
      await tx
        .update(notifications)
        .set({ status: 'failed', lastError: reason, claimExpiresAt: null })
        .where(
          and(eq(notifications.id, row.id), inArray(notifications.status, ['pending', 'sending'])),
        );
      if (failure.mark !== null) {
        await tx
          .update(accounts)
          .set({
            ...(failure.mark === 'sms-opted-out' ? { smsOptedOut: true } : { emailBounced: true }),
            version: sql`${accounts.version} + 1`,
          })
          .where(eq(accounts.id, row.accountId));
      }
      let fallbackKey: string | null = null;
      if (failure.fallBack && contact !== null) {
        fallbackKey = await queueFallback(tx, row, contact, failure.mark, now);
      }
      await appendEvent(tx, {
        accountId: row.accountId,
        kind: 'notification-failed',
        detail: {
          key: row.dedupeKey,
          channel: row.channel,
          template: row.template,
          code: failure.code,
          contactMarked: failure.mark,
          fallback: fallbackKey,
        },
        idempotencyKey: `notification-failed-${row.dedupeKey}`,
      });
      await markOutbox(tx, row.dedupeKey, 'failed', reason);
      return fallbackKey;
    });
  }

  /**
   * One fallback per message: never for a fallback itself, never when the same decision already
   * has a live message on the other channel, and only to a contact not known to be unreachable.
   * Channel preferences are not consulted: they choose the routine channel, and this message
   * could not be delivered on it.
   */
  async function queueFallback(
    tx: Db,
    row: NotificationRow,
    contact: AccountContact,
    mark: PermanentFailure['mark'],
    now: Date,
  ): Promise<string | null> {
    if (row.dedupeKey.endsWith(FALLBACK_SUFFIX)) return null;
    const other: Channel = row.channel === 'email' ? 'sms' : 'email';
    const recipient =
      other === 'email'
        ? contact.emailBounced || mark === 'email-bounced'
          ? null
          : contact.email
        : contact.smsOptedOut || mark === 'sms-opted-out'
          ? null
          : contact.phone;
    if (recipient === null) return null;

    const suffix = `-${row.channel}`;
    if (row.dedupeKey.endsWith(suffix)) {
      const sibling = `${row.dedupeKey.slice(0, -suffix.length)}-${other}`;
      const [existing] = await tx
        .select({ status: notifications.status })
        .from(notifications)
        .where(eq(notifications.dedupeKey, sibling))
        .limit(1);
      if (existing !== undefined && existing.status !== 'failed') return null;
    }

    const key = `${row.dedupeKey}${FALLBACK_SUFFIX}`;
    const notBefore = earliestSend(other, now, now, contact.timeZone, config.rules.quietHours);
    const inserted = await insertNotification(tx, {
      dedupeKey: key,
      accountId: row.accountId,
      channel: other,
      template: row.template,
      locale: row.locale,
      recipient,
      params: row.params,
      notBefore,
    });
    if (!inserted) return null;
    const [created] = await tx
      .select({ id: notifications.id })
      .from(notifications)
      .where(eq(notifications.dedupeKey, key))
      .limit(1);
    await insertOutbox(tx, {
      idempotencyKey: key,
      kind: 'notify',
      accountId: row.accountId,
      payload: { notificationId: created?.id ?? null, channel: other },
      availableAt: notBefore,
    });
    return key;
  }
}

/** The outbox status that matches a final notification status. */
function outboxStatusOf(status: string): 'done' | 'failed' | 'superseded' {
  return status === 'failed' || status === 'superseded' ? status : 'done';
}

/** Settles the message's outbox row from pending / dispatched (src/adapters/db/outbox-store.ts). */
async function markOutbox(
  db: Db | Tx,
  key: string,
  status: 'done' | 'failed' | 'superseded',
  lastError: string | null,
): Promise<void> {
  await settleOutbox(db, key, { status, reason: lastError });
}
