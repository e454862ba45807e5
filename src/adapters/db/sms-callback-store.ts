import { sql } from 'drizzle-orm';
import { queryRows, type Db } from './client';
import type { SMS_CALLBACK_TARGETS } from './schema';

/**
 * Delivery status callbacks of SMS. A status only moves forward (a late `sent` never overwrites
 * `delivered`). A callback for a message id no row carries yet (it came before the sender's
 * update committed) is kept in `sms_early_callbacks` and applied when the sender records the id.
 *
 * Both sides write first and then look at the other: the callback stores the early row and then
 * applies early rows; the sender records the id and then applies early rows. Whatever the order
 * of the two commits, the second `applyEarlyCallbacks` sees both, so no status is lost.
 */

export type CallbackTarget = (typeof SMS_CALLBACK_TARGETS)[number];

export interface CallbackStatus {
  readonly providerId: string;
  readonly messageId: string;
  readonly target: CallbackTarget;
  /** The provider's error code (undelivered / failed). */
  readonly errorCode: string | null;
  /** The provider's status word, for the reason kept on an undeliverable row. */
  readonly providerStatus: string;
}

/** Statuses a row may be in for the target to be a step forward. */
const FROM_SQL = sql`case t.status
  when 'sent' then n.status in ('pending', 'sending')
  else n.status in ('pending', 'sending', 'sent') end`;

/** Moves a message `n` to the callback's status `t.status`, keeping why it was undeliverable. */
const SET_STATUS_SQL = sql`set status = t.status,
      delivered_at = case when t.status = 'delivered' then now() else n.delivered_at end,
      last_error = coalesce(t.reason, n.last_error),
      updated_at = now()`;

export type CallbackResult = 'recorded' | 'kept-early' | 'ignored';

/**
 * Records a status callback: moves the message's row forward, or keeps the callback when no row
 * carries the message id yet. Returns what it did (and the row's key when recorded).
 */
export async function recordCallback(
  db: Db,
  c: CallbackStatus,
): Promise<{ result: CallbackResult; key: string | null }> {
  const reason =
    c.target === 'undeliverable'
      ? `${c.providerId}-${c.errorCode ?? 'unknown'}: ${c.providerStatus}`
      : null;
  const [row] = await queryRows<{ key: string | null; known: boolean }>(
    db,
    sql`
    with t as (select ${c.target}::text as status, ${reason}::text as reason),
    upd as (
      update notifications n ${SET_STATUS_SQL}
        from t
       where n.provider_id = ${c.providerId} and n.message_id = ${c.messageId} and ${FROM_SQL}
   returning n.dedupe_key
    )
    select (select dedupe_key from upd limit 1) as key,
           exists (select 1 from notifications
                    where provider_id = ${c.providerId} and message_id = ${c.messageId}) as known`,
  );
  if (row?.key) return { result: 'recorded', key: row.key };
  if (row?.known) return { result: 'ignored', key: null };
  await db.execute(sql`
    insert into sms_early_callbacks (provider_id, message_id, status, error_code)
    values (${c.providerId}, ${c.messageId}, ${c.target}, ${c.errorCode})
    on conflict (provider_id, message_id, status) do nothing`);
  // The sender may have recorded the id since the statement above: look again.
  const applied = await applyEarlyCallbacks(db, c.providerId, [c.messageId]);
  const key = applied[0]?.key ?? null;
  return key === null ? { result: 'kept-early', key: null } : { result: 'recorded', key };
}

/**
 * Applies (and removes) the kept callbacks of these message ids whose row now carries the id:
 * the most advanced status wins (delivered / undeliverable over sent). Returns what was applied.
 */
export async function applyEarlyCallbacks(
  db: Db,
  providerId: string,
  messageIds: readonly string[],
): Promise<{ key: string; status: CallbackTarget }[]> {
  if (messageIds.length === 0) return [];
  const ids = `{${messageIds.map((m) => `"${m.replace(/["\\]/g, '')}"`).join(',')}}`;
  return queryRows<{ key: string; status: CallbackTarget }>(
    db,
    sql`
    with e as (
      delete from sms_early_callbacks e
       using notifications n
       where e.provider_id = ${providerId} and e.message_id = any(${ids}::text[])
         and n.provider_id = e.provider_id and n.message_id = e.message_id
   returning e.message_id, e.status, e.error_code
    ),
    t as (
      select distinct on (message_id) message_id, status,
             case when status = 'undeliverable'
                  then ${providerId} || '-' || coalesce(error_code, 'unknown') || ': undelivered'
             end as reason
        from e
       order by message_id, case status when 'sent' then 0 else 1 end desc
    )
    update notifications n ${SET_STATUS_SQL}
      from t
     where n.provider_id = ${providerId} and n.message_id = t.message_id and ${FROM_SQL}
 returning n.dedupe_key as key, t.status`,
  );
}

/** Drops kept callbacks older than `maxAgeMs` whose message never showed up; returns them. */
export async function expireEarlyCallbacks(
  db: Db,
  maxAgeMs: number,
): Promise<{ providerId: string; messageId: string; status: string }[]> {
  return queryRows(
    db,
    sql`
    delete from sms_early_callbacks
     where received_at < now() - ${maxAgeMs} * interval '1 millisecond'
 returning provider_id as "providerId", message_id as "messageId", status`,
  );
}
