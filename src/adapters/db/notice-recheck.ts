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
 * The sender's re-check at send time (src/domain/notice-check.ts decides): one statement reads
 * the notice, its account's state, the account's other notices of the same episode on the same
 * channel, and the release state of the studio instances they name; one statement settles the
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

/** Reads what the re-check needs for notification `id`; null when the row is gone. */
export async function loadNoticeRecheck(
  db: Db,
  id: number,
  defaultLowBalanceThresholdMinor: Minor,
): Promise<NoticeRecheck | null> {
  const [row] = await queryRows<{
    notice: JsonNotice;
    siblings: JsonNotice[];
    instances: JsonInstance[];
    episode_seq: number | null;
    episode_open: boolean | null;
    enforcement_state: EnforcementState | null;
    available_balance_minor: string | number | null;
    low_balance_threshold_minor: string | number | null;
  }>(
    db,
    sql`
    with n as (
      select id, dedupe_key, account_id, channel, template, status, params
        from notifications where id = ${id}
    ),
    sib as (
      select e.id, e.dedupe_key, e.template, e.status, e.params
        from notifications e, n
       where n.params ? 'episodeSeq'
         and e.account_id = n.account_id
         and (e.params ->> 'episodeSeq') = (n.params ->> 'episodeSeq')
         and e.channel = n.channel
         and e.id <> n.id
    ),
    inst as (
      select i.id, i.released_at, i.release_due_at, i.release_episode_seq
        from studio_instances i
       where i.account_id = (select account_id from n)
         and i.id in (select params ->> 'instanceId' from n
                      union all select params ->> 'instanceId' from sib)
    )
    select json_build_object('id', n.id, 'dedupeKey', n.dedupe_key, 'template', n.template,
                             'status', n.status, 'params', n.params) as notice,
           (select coalesce(json_agg(json_build_object(
                     'id', sib.id, 'dedupeKey', sib.dedupe_key, 'template', sib.template,
                     'status', sib.status, 'params', sib.params) order by sib.id), '[]'::json)
              from sib) as siblings,
           (select coalesce(json_agg(json_build_object(
                     'id', inst.id, 'releasedAt', inst.released_at,
                     'releaseDueAt', inst.release_due_at,
                     'releaseEpisodeSeq', inst.release_episode_seq)), '[]'::json)
              from inst) as instances,
           a.episode_seq, a.episode_started_at is not null as episode_open, a.enforcement_state,
           a.available_balance_minor, a.low_balance_threshold_minor
      from n left join accounts a on a.id = n.account_id`,
  );
  if (row === undefined) return null;
  const instances = new Map<string, InstanceReleaseState>(
    row.instances.map((i) => [
      i.id,
      {
        releasedAt: date(i.releasedAt),
        releaseDueAt: date(i.releaseDueAt),
        releaseEpisodeSeq: i.releaseEpisodeSeq,
      },
    ]),
  );
  return {
    notice: toNotice(row.notice),
    siblings: row.siblings.map(toNotice),
    state:
      row.enforcement_state === null
        ? null
        : {
            episodeSeq: row.episode_seq ?? 0,
            episodeOpen: row.episode_open === true,
            enforcementState: row.enforcement_state,
            availableBalanceMinor: Number(row.available_balance_minor ?? 0),
            lowBalanceThresholdMinor:
              row.low_balance_threshold_minor === null
                ? defaultLowBalanceThresholdMinor
                : Number(row.low_balance_threshold_minor),
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
