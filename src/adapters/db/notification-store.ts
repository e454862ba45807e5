import { and, eq, inArray, sql } from 'drizzle-orm';
import type { QuietHours } from '../../domain/rules';
import { checkNotice } from '../../domain/notice-check';
import type { Channel } from '../../domain/snapshot';
import {
  earliestSend,
  FALLBACK_SUFFIX,
  isFinalNotification,
  planFallback,
  type ContactMark,
} from '../../notify/send-rules';
import { queryRows, type Db } from './client';
import { MESSAGES_GO } from './control-store';
import { appendEvent, insertNotification, insertOutbox } from './daemon-writers';
import {
  RECHECK_SQL,
  supersedeNotices,
  toNoticeRecheck,
  type NoticeRecheck,
  type RecheckJson,
} from './notice-recheck';
import { reopenOutbox, settleOutbox, settleOutboxOfSentNotices } from './outbox-store';
import { accounts, notifications } from './schema';

/**
 * The statements that move a `notifications` row while it is sent: load, claim under a lease
 * (a token and an expiry on the database's clock), record sent, release after a transient
 * failure, fail for good with one fallback. Each names the statuses it moves from. Load, claim
 * and record sent take many messages at once (fixed-shape SQL: the rows travel as one JSON
 * parameter), so concurrent sends share statements (notification-batches.ts).
 */

export type NotificationRow = typeof notifications.$inferSelect;
export interface AccountContact {
  readonly timeZone: string;
  readonly email: string | null;
  readonly phone: string | null;
  readonly smsOptedOut: boolean;
  readonly emailBounced: boolean;
}

/** What the sender needs of one message, read in one statement with other messages'. */
export interface SendState {
  readonly row: NotificationRow;
  /** The account's contact state; undefined when the account is gone. */
  readonly contact: AccountContact | undefined;
  /** The re-check's input (siblings and instances are read only for a pending row). */
  readonly recheck: NoticeRecheck;
}

/**
 * The rows with these dedupe keys, their accounts' contact state and what the re-check at send
 * time needs, in one statement whose text does not change with the number of keys. One result
 * per key, in order; null where no row has the key.
 */
export async function loadForSendMany(
  db: Db,
  keys: readonly string[],
  lowBalanceThresholdMinor: number,
): Promise<(SendState | null)[]> {
  if (keys.length === 0) return [];
  const loaded = await db
    .select({
      row: notifications,
      timeZone: accounts.timeZone,
      email: accounts.email,
      phone: accounts.phone,
      smsOptedOut: accounts.smsOptedOut,
      emailBounced: accounts.emailBounced,
      episodeSeq: accounts.episodeSeq,
      episodeOpen: sql<boolean | null>`${accounts.episodeStartedAt} is not null`,
      enforcementState: accounts.enforcementState,
      availableBalanceMinor: accounts.availableBalanceMinor,
      lowBalanceThresholdMinor: accounts.lowBalanceThresholdMinor,
      notice: sql<RecheckJson['notice']>`${RECHECK_SQL.notice}`,
      siblings: sql<RecheckJson['siblings']>`${RECHECK_SQL.siblings}`,
      instances: sql<RecheckJson['instances']>`${RECHECK_SQL.instances}`,
    })
    .from(notifications)
    .leftJoin(accounts, eq(accounts.id, notifications.accountId))
    .where(
      sql`${notifications.dedupeKey} in (select jsonb_array_elements_text(${JSON.stringify(keys)}::jsonb))`,
    );
  const byKey = new Map(loaded.map((l) => [l.row.dedupeKey, l]));
  return keys.map((key) => {
    const l = byKey.get(key);
    if (l === undefined) return null;
    const contact =
      l.timeZone === null
        ? undefined
        : {
            timeZone: l.timeZone,
            email: l.email,
            phone: l.phone,
            smsOptedOut: l.smsOptedOut ?? false,
            emailBounced: l.emailBounced ?? false,
          };
    const recheck = toNoticeRecheck(l, l, lowBalanceThresholdMinor);
    return { row: l.row, contact, recheck };
  });
}

export type RecheckResult =
  | { readonly kind: 'send' | 'superseded' | 'hold'; readonly reason: string | null }
  | { readonly kind: 'changed' };

/**
 * The notice's condition at send time (src/domain/notice-check.ts), from what the send load
 * read: settles it, and pending notices of its episode that are no longer true, as superseded
 * (a statement only when there is one to settle). Returns the verdict and the other notices
 * superseded; `changed` when a row left `pending` meanwhile.
 */
export async function recheckForSend(
  db: Db,
  id: number,
  loaded: NoticeRecheck,
): Promise<{ result: RecheckResult; others: { key: string; reason: string }[] }> {
  // No account: the send path fails the message with that reason.
  if (loaded.state === null) return { result: { kind: 'send', reason: null }, others: [] };
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

/** How long a message held by the enforcement mode waits before it asks again, ms. */
export const MODE_HOLD_MS = 5_000;

export type Claim =
  | { kind: 'claimed'; firstAttemptAt: Date; interrupted: boolean }
  /** `lease`: another attempt holds it until then; `mode`: not `enforce`, or messages paused. */
  | { kind: 'held'; until: Date; reason: 'lease' | 'mode' }
  | { kind: 'final'; status: string }
  /** Released or moved back to pending while being claimed: take it on the next attempt. */
  | { kind: 'changed' };

export interface ClaimRequest {
  readonly id: number;
  readonly claimToken: string;
  /** The attempt's instant, kept as `sent_at` by the first attempt. */
  readonly now: Date;
  readonly leaseMs: number;
}

/**
 * pending, or sending with an expired lease → sending, held by each request's `claimToken` for
 * its `leaseMs` on the database's clock; tells whether an earlier attempt may have handed the
 * message over already (the row was `sending` without a provider id). One statement for all the
 * requests (rows locked in id order, so two batches never deadlock); one result per request, in
 * order. Two requests for the same row: the first takes it, the other is told `changed`.
 */
export async function claimNotifications(
  db: Db,
  requests: readonly ClaimRequest[],
): Promise<Claim[]> {
  if (requests.length === 0) return [];
  const input = JSON.stringify(
    requests.map((r) => ({
      id: r.id,
      token: r.claimToken,
      at: r.now.toISOString(),
      lease_ms: r.leaseMs,
    })),
  );
  const rows = await queryRows<{
    id: number | string;
    token: string;
    claimed: boolean;
    prev_status: string | null;
    message_id: string | null;
    sent_at: Date | string | null;
    status: string | null;
    enforcing: boolean;
    until: Date | string | null;
  }>(
    db,
    sql`
    with x as (
      select * from rows from (jsonb_to_recordset(${input}::jsonb)
        as (id bigint, token text, at timestamptz, lease_ms integer)) with ordinality as x
    ),
    prev as (
      select n.id, n.status, n.claim_expires_at,
             ${MESSAGES_GO} as enforcing
        from notifications n
       where n.id in (select id from x)
       order by n.id
         for update
    ),
    claimed as (
      update notifications n
         set status = 'sending',
             attempts = n.attempts + 1,
             sent_at = coalesce(n.sent_at, x.at),
             claim_token = x.token,
             claim_expires_at = clock_timestamp() + x.lease_ms * interval '1 millisecond',
             updated_at = now()
        from prev, (select distinct on (id) * from x order by id, ordinality) x
       where n.id = prev.id and x.id = prev.id and prev.enforcing
         and (prev.status = 'pending'
              or (prev.status = 'sending'
                  and (prev.claim_expires_at is null or prev.claim_expires_at < clock_timestamp())))
   returning n.id, n.claim_token, prev.status as prev_status, n.message_id, n.sent_at,
             n.claim_expires_at
    )
    select x.id, x.token, c.id is not null as claimed, c.prev_status, c.message_id, c.sent_at,
           coalesce(c.prev_status, p.status) as status, coalesce(p.enforcing, true) as enforcing,
           coalesce(c.claim_expires_at, p.claim_expires_at) as until
      from x
      left join claimed c on c.id = x.id and c.claim_token = x.token
      left join prev p on p.id = x.id`,
  );
  const byToken = new Map(rows.map((r) => [r.token, r]));
  return requests.map((req): Claim => {
    const r = byToken.get(req.claimToken);
    if (r === undefined || r.status === null) return { kind: 'final', status: 'failed' };
    if (r.claimed) {
      return {
        kind: 'claimed',
        firstAttemptAt: new Date(r.sent_at ?? req.now),
        interrupted: r.prev_status === 'sending' && r.message_id === null,
      };
    }
    if (r.status === 'sending' && r.until !== null)
      return { kind: 'held', until: new Date(r.until), reason: 'lease' };
    // Shadow, off or messages paused: the message waits, unsent, for enforce and no pause
    // (re-checked then like any other).
    if (!r.enforcing && !isFinalNotification(r.status)) {
      return { kind: 'held', until: new Date(Date.now() + MODE_HOLD_MS), reason: 'mode' };
    }
    if (isFinalNotification(r.status)) return { kind: 'final', status: r.status };
    return { kind: 'changed' };
  });
}

export interface SentRecord {
  readonly id: number;
  readonly claimToken: string;
  readonly provider: string;
  readonly messageId: string;
}

/**
 * sending (held by the record's `claimToken`) → sent, with the provider's id, and its outbox row
 * pending | dispatched → done, for every record in one statement. One result per record: true
 * when it was recorded, false when the attempt no longer held the row (a fenced-off late holder
 * records nothing).
 */
export async function markSentMany(db: Db, records: readonly SentRecord[]): Promise<boolean[]> {
  if (records.length === 0) return [];
  const input = JSON.stringify(
    records.map((r) => ({
      id: r.id,
      token: r.claimToken,
      provider: r.provider,
      message_id: r.messageId,
    })),
  );
  const rows = await queryRows<{ token: string }>(
    db,
    sql`
    with x as (
      select * from jsonb_to_recordset(${input}::jsonb)
        as x(id bigint, token text, provider text, message_id text)
    ),
    sent as (
      update notifications n
         set status = 'sent', provider_id = x.provider, message_id = x.message_id,
             last_error = null, claim_expires_at = null, updated_at = now()
        from x
       where n.id = x.id and n.status = 'sending' and n.claim_token = x.token
   returning n.id, n.dedupe_key, x.token
    ),
    ob as (${settleOutboxOfSentNotices('sent')}
    )
    select token from sent`,
  );
  const recorded = new Set(rows.map((r) => r.token));
  return records.map((r) => recorded.has(r.claimToken));
}

const held = (id: number, claimToken: string) =>
  and(
    eq(notifications.id, id),
    eq(notifications.status, 'sending'),
    eq(notifications.claimToken, claimToken),
  );

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

/** The answer to an operator's retry of a message. */
export type NotificationRetry =
  | {
      readonly kind: 'reopened';
      readonly accountId: string;
      readonly channel: Channel;
      readonly previousStatus: string;
      readonly previousError: string | null;
    }
  | {
      readonly kind: 'refused';
      readonly accountId: string;
      readonly code: 'not-failed' | 'no-account' | 'contact-unreachable' | 'fallback-live';
      readonly reason: string;
    };

/**
 * failed | undeliverable → pending: an operator's retry of a message, in the caller's
 * transaction (row locked). Refused for a message that did not fail, for an account gone, for a
 * channel whose contact is missing or marked (`email_bounced`, `sms_opted_out`: the billing
 * system corrects the address and clears the mark first), and when the message's fallback on the
 * other channel is sent or on its way (the customer has the notice). Otherwise the message goes
 * to the account's current address for its channel, at once (quiet hours still apply), its give-up
 * age counted from now; its outbox row is reopened (or written again if retention removed it).
 * Null when no message has this key.
 */
export async function reopenFailedNotification(
  tx: Db,
  key: string,
): Promise<NotificationRetry | null> {
  const [row] = await queryRows<{
    id: number | string;
    account_id: string;
    channel: Channel;
    status: string;
    last_error: string | null;
    has_account: boolean;
    email: string | null;
    phone: string | null;
    email_bounced: boolean | null;
    sms_opted_out: boolean | null;
    fallback_key: string;
    fallback_status: string | null;
  }>(
    tx,
    sql`select n.id, n.account_id, n.channel, n.status, n.last_error,
               a.id is not null as has_account, a.email, a.phone, a.email_bounced,
               a.sms_opted_out, f.dedupe_key as fallback_key, f.status as fallback_status
          from notifications n
          left join accounts a on a.id = n.account_id
          left join notifications f on f.dedupe_key = n.dedupe_key || ${FALLBACK_SUFFIX}
         where n.dedupe_key = ${key}
           for update of n`,
  );
  if (row === undefined) return null;
  const refuse = (code: Extract<NotificationRetry, { kind: 'refused' }>['code'], reason: string) =>
    ({ kind: 'refused', accountId: row.account_id, code, reason }) as const;
  if (row.status !== 'failed' && row.status !== 'undeliverable') {
    return refuse('not-failed', `message ${key} is ${row.status}, not failed or undeliverable`);
  }
  if (!row.has_account) return refuse('no-account', `account ${row.account_id} no longer exists`);
  const recipient = (row.channel === 'email' ? row.email : row.phone)?.trim() ?? '';
  if (recipient === '') {
    return refuse('contact-unreachable', `the account has no ${row.channel} address`);
  }
  if (row.channel === 'email' && row.email_bounced === true) {
    return refuse(
      'contact-unreachable',
      "the account's email address bounced (email_bounced): correct it in the billing system, which clears the mark, then retry",
    );
  }
  if (row.channel === 'sms' && row.sms_opted_out === true) {
    return refuse(
      'contact-unreachable',
      "the account's phone opted out of SMS (sms_opted_out): only the customer or the billing system can clear it",
    );
  }
  if (
    row.fallback_status !== null &&
    !['failed', 'undeliverable', 'superseded'].includes(row.fallback_status)
  ) {
    return refuse(
      'fallback-live',
      `its fallback ${row.fallback_key} is ${row.fallback_status}: the customer has this notice on the other channel`,
    );
  }
  await tx.execute(sql`
    update notifications
       set status = 'pending', recipient = ${recipient}, last_error = null, provider_id = null,
           message_id = null, sent_at = null, delivered_at = null, claim_token = null,
           claim_expires_at = null, not_before = now(), retried_at = now(), updated_at = now()
     where id = ${Number(row.id)}`);
  const from = row.status === 'failed' ? 'failed' : 'done';
  if (!(await reopenOutbox(tx, key, from))) {
    await insertOutbox(tx, {
      idempotencyKey: key,
      kind: 'notify',
      accountId: row.account_id,
      payload: { channel: row.channel },
    });
  }
  return {
    kind: 'reopened',
    accountId: row.account_id,
    channel: row.channel,
    previousStatus: row.status,
    previousError: row.last_error,
  };
}
