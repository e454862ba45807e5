import { and, eq, inArray, sql } from 'drizzle-orm';
import type { QuietHours } from '../../domain/rules';
import { checkNotice } from '../../domain/notice-check';
import {
  earliestSend,
  isFinalNotification,
  planFallback,
  type ContactMark,
} from '../../notify/send-rules';
import { queryRows, type Db } from './client';
import { appendEvent, insertNotification, insertOutbox } from './daemon-writers';
import { loadNoticeRecheck, supersedeNotices } from './notice-recheck';
import { settleOutbox } from './outbox-store';
import { accounts, notifications } from './schema';

/**
 * The statements that move a `notifications` row while it is sent: load, claim under a lease
 * (a token and an expiry on the database's clock), record sent, release after a transient
 * failure, fail for good with one fallback. Each names the statuses it moves from.
 */

export type NotificationRow = typeof notifications.$inferSelect;
export interface AccountContact {
  readonly timeZone: string;
  readonly email: string | null;
  readonly phone: string | null;
  readonly smsOptedOut: boolean;
  readonly emailBounced: boolean;
}

/** The row and the account's contact state (undefined when the account is gone), one read. */
export async function loadForSend(
  db: Db,
  key: string,
): Promise<{ row: NotificationRow; contact: AccountContact | undefined } | null> {
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
    .where(eq(notifications.dedupeKey, key))
    .limit(1);
  if (loaded === undefined) return null;
  return {
    row: loaded.row,
    contact:
      loaded.timeZone === null
        ? undefined
        : {
            timeZone: loaded.timeZone,
            email: loaded.email,
            phone: loaded.phone,
            smsOptedOut: loaded.smsOptedOut ?? false,
            emailBounced: loaded.emailBounced ?? false,
          },
  };
}

export type RecheckResult =
  | { readonly kind: 'send' | 'superseded' | 'hold'; readonly reason: string | null }
  | { readonly kind: 'changed' };

/**
 * The notice's condition at send time (src/domain/notice-check.ts), one read: settles it, and
 * pending notices of its episode that are no longer true, as superseded. Returns the verdict
 * and the other notices superseded; `changed` when a row left `pending` meanwhile.
 */
export async function recheckForSend(
  db: Db,
  id: number,
  lowBalanceThresholdMinor: number,
): Promise<{ result: RecheckResult; others: { key: string; reason: string }[] }> {
  const loaded = await loadNoticeRecheck(db, id, lowBalanceThresholdMinor);
  // No account: the send path fails the message with that reason.
  if (loaded === null || loaded.state === null)
    return { result: { kind: 'send', reason: null }, others: [] };
  const { verdict, supersedeOthers } = checkNotice(loaded.notice, loaded.siblings, loaded.state);
  const items = supersedeOthers.map((o) => ({ id: o.notice.id, reason: o.reason }));
  if (verdict.kind === 'supersede') items.push({ id, reason: verdict.reason });
  const done = await supersedeNotices(db, items);
  const others = supersedeOthers
    .filter((o) => done.has(o.notice.id))
    .map((o) => ({ key: o.notice.dedupeKey, reason: o.reason }));
  if (items.some((i) => !done.has(i.id))) return { result: { kind: 'changed' }, others };
  if (verdict.kind === 'supersede')
    return { result: { kind: 'superseded', reason: verdict.reason }, others };
  if (verdict.kind === 'hold') return { result: { kind: 'hold', reason: verdict.reason }, others };
  return { result: { kind: 'send', reason: null }, others };
}

export type Claim =
  | { kind: 'claimed'; firstAttemptAt: Date; interrupted: boolean }
  | { kind: 'held'; until: Date }
  | { kind: 'final'; status: string };

/**
 * pending, or sending with an expired lease → sending, held by `claimToken` for `leaseMs` on the
 * database's clock; tells whether an earlier attempt may have handed the message over already
 * (the row was `sending` without a provider id).
 */
export async function claimNotification(
  db: Db,
  id: number,
  claimToken: string,
  now: Date,
  leaseMs: number,
): Promise<Claim> {
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
  if (isFinalNotification(current.status)) return { kind: 'final', status: current.status };
  // Released between the two statements: take it on the next attempt.
  throw new Error(`notification ${id} changed while being claimed; retrying`);
}

const held = (id: number, claimToken: string) =>
  and(
    eq(notifications.id, id),
    eq(notifications.status, 'sending'),
    eq(notifications.claimToken, claimToken),
  );

/** sending (held by `claimToken`) → sent, with the provider's id. */
export async function markSent(
  db: Db,
  id: number,
  claimToken: string,
  provider: string,
  messageId: string,
): Promise<void> {
  await db
    .update(notifications)
    .set({ status: 'sent', providerId: provider, messageId, lastError: null, claimExpiresAt: null })
    .where(held(id, claimToken));
}

/**
 * sending (held) → pending after a transient failure the provider did not accept (the next
 * attempt may send at once), or stays sending, unheld, when it may have accepted (the next
 * attempt reconciles first).
 */
export async function releaseAfterTransient(
  db: Db,
  id: number,
  claimToken: string,
  ambiguous: boolean,
  error: string,
): Promise<void> {
  await db
    .update(notifications)
    .set({
      status: ambiguous ? 'sending' : 'pending',
      lastError: error.slice(0, 1_000),
      claimExpiresAt: null,
    })
    .where(held(id, claimToken));
}

export interface PermanentFailureInfo {
  readonly code: string;
  readonly reason: string;
  readonly mark: ContactMark;
  /** False when the other channel cannot do better (bad template params). */
  readonly fallBack: boolean;
}

/**
 * pending | sending → failed, in one transaction with: the contact marked when the provider
 * says so, one fallback message queued on the other channel, the event, and the outbox row
 * settled failed. Returns the fallback's key or null.
 */
export async function failNotification(
  db: Db,
  row: NotificationRow,
  contact: AccountContact | null,
  failure: PermanentFailureInfo,
  now: Date,
  quiet: QuietHours,
): Promise<string | null> {
  return db.transaction(async (tx) => {
    const reason = `${failure.code}: ${failure.reason}`.slice(0, 1_000);
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
    const plan =
      failure.fallBack && contact !== null
        ? planFallback(row.dedupeKey, row.channel, contact, failure.mark)
        : null;
    if (plan !== null) {
      let live = false;
      if (plan.siblingKey !== null) {
        const [sibling] = await tx
          .select({ status: notifications.status })
          .from(notifications)
          .where(eq(notifications.dedupeKey, plan.siblingKey))
          .limit(1);
        live = sibling !== undefined && sibling.status !== 'failed';
      }
      const notBefore = earliestSend(plan.channel, now, now, contact?.timeZone ?? 'UTC', quiet);
      const inserted =
        !live &&
        (await insertNotification(tx, {
          dedupeKey: plan.key,
          accountId: row.accountId,
          channel: plan.channel,
          template: row.template,
          locale: row.locale,
          recipient: plan.recipient,
          params: row.params,
          notBefore,
        }));
      if (inserted) {
        const [created] = await tx
          .select({ id: notifications.id })
          .from(notifications)
          .where(eq(notifications.dedupeKey, plan.key))
          .limit(1);
        await insertOutbox(tx, {
          idempotencyKey: plan.key,
          kind: 'notify',
          accountId: row.accountId,
          payload: { notificationId: created?.id ?? null, channel: plan.channel },
          availableAt: notBefore,
        });
        fallbackKey = plan.key;
      }
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
    await settleOutbox(tx, row.dedupeKey, { status: 'failed', reason });
    return fallbackKey;
  });
}
