import { sql } from 'drizzle-orm';
import type { Minor } from '../../domain/money';
import type {
  InstanceReleaseState,
  NoticeAccountState,
  QueuedNotice,
} from '../../domain/notice-check';
import type { EnforcementState } from '../../domain/snapshot';
import { queryRows, type Db } from './client';
import { supersedeOutboxOfNotices } from './outbox-store';

/**
 * The sender's re-check at send time (src/domain/notice-check.ts decides): the send load
 * (notification-store.ts, loadForSendMany) reads, in its one statement, the notice, its account's
 * state, the account's other notices of the same episode on the same channel, and the release
 * state of the studio instances they name (RECHECK_COLUMNS_SQL); one statement settles the
 * notices that are no longer true.
 */

export interface NoticeRecheck {
  readonly notice: QueuedNotice;
  readonly siblings: readonly QueuedNotice[];
  /** Null when the account row is gone (the sender fails the message for that). */
  readonly state: NoticeAccountState | null;
}

interface JsonNotice {
  readonly id: number | string;
  readonly dedupeKey: string;
  readonly template: string;
  readonly status: string;
  readonly params: Record<string, unknown> | null;
}

interface JsonInstance {
  readonly id: string;
  readonly releasedAt: string | null;
  readonly releaseDueAt: string | null;
  readonly releaseEpisodeSeq: number | null;
}

function toNotice(row: JsonNotice): QueuedNotice {
  const seq = row.params?.episodeSeq;
  const instanceId = row.params?.instanceId;
  return {
    id: Number(row.id),
    dedupeKey: row.dedupeKey,
    template: row.template,
    status: row.status,
    episodeSeq: typeof seq === 'number' && Number.isSafeInteger(seq) ? seq : null,
    instanceId: typeof instanceId === 'string' ? instanceId : null,
  };
}

const date = (v: string | null): Date | null => (v === null ? null : new Date(v));

/** The re-check's account columns, as the send load reads them (null: no account row). */
export interface RecheckAccountColumns {
  readonly episodeSeq: number | null;
  readonly episodeOpen: boolean | null;
  readonly enforcementState: EnforcementState | null;
  readonly availableBalanceMinor: string | number | null;
  readonly lowBalanceThresholdMinor: string | number | null;
}

/** The JSON columns of the send load: the notice, its siblings and their studio instances. */
export interface RecheckJson {
  readonly notice: JsonNotice;
  readonly siblings: readonly JsonNotice[];
  readonly instances: readonly JsonInstance[];
}

/** Siblings of the row `notifications` (in scope under that name): same account, episode, channel. */
const SIBLINGS_OF_ROW = `
       from notifications e
      where notifications.params ? 'episodeSeq'
        and e.account_id = notifications.account_id
        and (e.params ->> 'episodeSeq') = (notifications.params ->> 'episodeSeq')
        and e.channel = notifications.channel
        and e.id <> notifications.id`;

/**
 * The re-check's JSON columns for the row `notifications` (in scope under that name): the notice,
 * its siblings, and the release state of the studio instances they name; siblings and instances
 * are read only for a pending row.
 */
export const RECHECK_SQL = {
  notice: sql.raw(`json_build_object('id', notifications.id,
    'dedupeKey', notifications.dedupe_key, 'template', notifications.template,
    'status', notifications.status, 'params', notifications.params)`),
  siblings: sql.raw(`case when notifications.status = 'pending' then
    (select coalesce(json_agg(json_build_object(
              'id', e.id, 'dedupeKey', e.dedupe_key, 'template', e.template,
              'status', e.status, 'params', e.params) order by e.id), '[]'::json)
     ${SIBLINGS_OF_ROW})
  else '[]'::json end`),
  instances: sql.raw(`case when notifications.status = 'pending' then
    (select coalesce(json_agg(json_build_object(
              'id', i.id, 'releasedAt', i.released_at, 'releaseDueAt', i.release_due_at,
              'releaseEpisodeSeq', i.release_episode_seq)), '[]'::json)
       from studio_instances i
      where i.account_id = notifications.account_id
        and i.id in (select notifications.params ->> 'instanceId'
                     union all
                     select e.params ->> 'instanceId' ${SIBLINGS_OF_ROW}))
  else '[]'::json end`),
};

/** The re-check's input from the columns the send load read. */
export function toNoticeRecheck(
  json: RecheckJson,
  account: RecheckAccountColumns,
  defaultLowBalanceThresholdMinor: Minor,
): NoticeRecheck {
  const instances = new Map<string, InstanceReleaseState>(
    json.instances.map((i) => [
      i.id,
      {
        releasedAt: date(i.releasedAt),
        releaseDueAt: date(i.releaseDueAt),
        releaseEpisodeSeq: i.releaseEpisodeSeq,
      },
    ]),
  );
  return {
    notice: toNotice(json.notice),
    siblings: json.siblings.map(toNotice),
    state:
      account.enforcementState === null
        ? null
        : {
            episodeSeq: account.episodeSeq ?? 0,
            episodeOpen: account.episodeOpen === true,
            enforcementState: account.enforcementState,
            availableBalanceMinor: Number(account.availableBalanceMinor ?? 0),
            lowBalanceThresholdMinor:
              account.lowBalanceThresholdMinor === null
                ? defaultLowBalanceThresholdMinor
                : Number(account.lowBalanceThresholdMinor),
            instances,
          },
  };
}

/**
 * pending → superseded, with the reason in `last_error`; their outbox rows are settled `superseded`
 * with the reason (outbox-store), and a `notification-superseded` event is written for each. A row that is no
 * longer pending (being sent, or settled meanwhile) is left alone. Returns the ids superseded.
 */
export async function supersedeNotices(
  db: Db,
  items: readonly { readonly id: number; readonly reason: string }[],
): Promise<Set<number>> {
  if (items.length === 0) return new Set();
  const input = JSON.stringify(items.map((i) => ({ id: i.id, reason: i.reason.slice(0, 1_000) })));
  const rows = await queryRows<{ id: number | string }>(
    db,
    sql`
    with x as (
      select * from jsonb_to_recordset(${input}::jsonb) as x(id bigint, reason text)
    ),
    upd as (
      update notifications n
         set status = 'superseded', last_error = x.reason, claim_expires_at = null,
             updated_at = now()
        from x
       where n.id = x.id and n.status = 'pending'
   returning n.id, n.dedupe_key, n.account_id, n.channel, n.template, n.params, x.reason
    ),
    ob as (${supersedeOutboxOfNotices('upd')}
    ),
    ev as (
      insert into enforcement_events (account_id, kind, episode_seq, detail, idempotency_key)
      select upd.account_id, 'notification-superseded',
             case when jsonb_typeof(upd.params -> 'episodeSeq') = 'number'
                  then (upd.params ->> 'episodeSeq')::int end,
             jsonb_build_object('key', upd.dedupe_key, 'channel', upd.channel,
                                'template', upd.template, 'reason', upd.reason),
             'notification-superseded-' || upd.dedupe_key
        from upd
          on conflict (idempotency_key) do nothing
    )
    select id from upd`,
  );
  return new Set(rows.map((r) => Number(r.id)));
}
