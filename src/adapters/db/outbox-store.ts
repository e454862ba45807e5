import { sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import type { EffectTargetState } from '../../domain/effect-wanted';
import { queryRows, type Db, type Tx } from './client';
import { appendEvent, type EventInput } from './daemon-writers';
import type { OUTBOX_STATUSES } from './schema';

/**
 * The one owner of outbox state. Every statement that changes an outbox row is here, and each
 * names the status it moves from (as BullMQ's moveToFinished and graphile-worker's
 * completeJobs / failJobs do), so a late or repeated caller changes nothing:
 *
 *   pending ──relay──► dispatched ──settle──► done | failed | superseded
 *      └────────────settle (cancelled, unknown kind, no job needed)──────┘
 *
 * A control-plane effect is also claimed under a lease while dispatched (claimEffect): its
 * outcome is recorded only under the holder's token, so a holder whose lease ran out (a GC
 * pause, a partition) records nothing once another has taken over.
 */

export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];
export type FinalStatus = 'done' | 'failed' | 'superseded';
export const FINAL_OUTBOX_STATUSES: readonly FinalStatus[] = ['done', 'failed', 'superseded'];

export interface OutboxEntry {
  readonly id: number;
  readonly key: string;
  readonly kind: string;
  readonly accountId: string;
  readonly payload: unknown;
  readonly status: OutboxStatus;
  readonly attempts: number;
}

type Executor = Db | Tx;

/** Payload of a control-plane row. `episodeSeq` is absent for an operator's hold. */
export const controlPayloadSchema = z.object({
  op: z.enum(['suspend', 'resume', 'release']),
  serviceId: z.string().min(1),
  instanceId: z.string().min(1).optional(),
  episodeSeq: z.number().int().positive().optional(),
  /** Who asked, when an operator did (attributed in the applied event). */
  actor: z.string().min(1).max(200).optional(),
  /** The reason given to the control plane; default from the op. */
  reason: z.string().min(1).max(100).optional(),
});
export type ControlPayload = z.infer<typeof controlPayloadSchema>;

export async function loadOutbox(db: Executor, key: string): Promise<OutboxEntry | null> {
  const rows = await queryRows<{
    id: number | string;
    idempotency_key: string;
    kind: string;
    account_id: string;
    payload: unknown;
    status: OutboxStatus;
    attempts: number;
  }>(
    db,
    sql`
    select id, idempotency_key, kind, account_id, payload, status, attempts
      from outbox where idempotency_key = ${key}`,
  );
  const row = rows[0];
  if (row === undefined) return null;
  return {
    id: Number(row.id),
    key: row.idempotency_key,
    kind: row.kind,
    accountId: row.account_id,
    payload: row.payload,
    status: row.status,
    attempts: row.attempts,
  };
}

/** How a row is finished, with the reason (kept in last_error, ≤ 1,000 characters). */
export interface Settlement {
  readonly status: FinalStatus;
  readonly reason: string | null;
  /** Only the holder of this claim may settle (a fenced-off holder records nothing). */
  readonly claimToken?: string;
  /** Written in the same transaction, only when this call settled the row. */
  readonly event?: EventInput;
}

function clip(reason: string | null): string | null {
  return reason === null ? null : reason.slice(0, 1_000);
}

/**
 * pending | dispatched → done | failed | superseded. With a claim token, only the row's current
 * holder settles it. True when this call moved the row.
 */
export async function settleOutbox(db: Executor, key: string, s: Settlement): Promise<boolean> {
  const fence = s.claimToken === undefined ? sql`` : sql` and claim_token = ${s.claimToken}`;
  const move = (tx: Executor) =>
    queryRows<{ id: number }>(
      tx,
      sql`
      update outbox
         set status = ${s.status}, last_error = ${clip(s.reason)},
             claim_token = null, claim_expires_at = null, updated_at = now()
       where idempotency_key = ${key} and status in ('pending', 'dispatched')${fence}
   returning id`,
    );
  if (s.event === undefined) return (await move(db)).length > 0;
  const event = s.event;
  return db.transaction(async (tx) => {
    const moved = (await move(tx)).length > 0;
    if (moved) await appendEvent(tx, event);
    return moved;
  });
}

/** pending → dispatched for rows the relay has enqueued (attempts counts dispatches). */
export async function markDispatched(tx: Executor, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await tx.execute(sql`
    update outbox set status = 'dispatched', attempts = attempts + 1, updated_at = now()
     where id = any(${`{${ids.join(',')}}`}::bigint[]) and status = 'pending'`);
}

/** pending → done | failed | superseded by id (rows the relay finishes without a job). */
export async function settleOutboxIds(
  tx: Executor,
  items: readonly {
    readonly id: number;
    readonly status: FinalStatus;
    readonly reason: string | null;
  }[],
): Promise<void> {
  if (items.length === 0) return;
  const input = JSON.stringify(
    items.map((i) => ({ id: i.id, status: i.status, reason: clip(i.reason) })),
  );
  await tx.execute(sql`
    update outbox o
       set status = x.status, last_error = x.reason, updated_at = now()
      from jsonb_to_recordset(${input}::jsonb) as x(id bigint, status text, reason text)
     where o.id = x.id and o.status = 'pending'`);
}

/**
 * pending | dispatched → superseded for rows named by key (a cancelled timer, whose job may
 * already be in Redis). Returns the keys settled.
 */
export async function supersedeOutboxKeys(
  tx: Executor,
  keys: readonly string[],
  reason: string,
): Promise<string[]> {
  if (keys.length === 0) return [];
  const rows = await queryRows<{ idempotency_key: string }>(
    tx,
    sql`
    update outbox
       set status = 'superseded', last_error = ${clip(reason)},
           claim_token = null, claim_expires_at = null, updated_at = now()
     where idempotency_key = any(${`{${keys.map((k) => `"${k}"`).join(',')}}`}::text[])
       and status in ('pending', 'dispatched')
 returning idempotency_key`,
  );
  return rows.map((r) => r.idempotency_key);
}

/**
 * The CTE step that settles, as superseded, the outbox rows of notifications superseded in the
 * same statement. `source` names a preceding CTE with columns dedupe_key and reason.
 */
export function supersedeOutboxOfNotices(source: string): SQL {
  if (!/^[a-z_]+$/.test(source)) throw new Error(`bad CTE name ${source}`);
  const from = sql.raw(source);
  return sql`
      update outbox o
         set status = 'superseded', last_error = left(${from}.reason, 1000),
             claim_token = null, claim_expires_at = null, updated_at = now()
        from ${from}
       where o.idempotency_key = ${from}.dedupe_key and o.status in ('pending', 'dispatched')`;
}

/**
 * The CTE step that settles, as done, the outbox rows of notifications recorded sent in the same
 * statement. `source` names a preceding CTE with column dedupe_key.
 */
export function settleOutboxOfSentNotices(source: string): SQL {
  if (!/^[a-z_]+$/.test(source)) throw new Error(`bad CTE name ${source}`);
  const from = sql.raw(source);
  return sql`
      update outbox o
         set status = 'done', last_error = null,
             claim_token = null, claim_expires_at = null, updated_at = now()
        from ${from}
       where o.idempotency_key = ${from}.dedupe_key and o.status in ('pending', 'dispatched')`;
}

/**
 * dispatched → dispatched: a retryable attempt (the control plane unavailable) is counted, its
 * reason kept, and the lease released so the retry may claim at once. With a token, only the
 * holder's note lands. True when it did.
 */
export async function noteOutboxAttempt(
  db: Executor,
  key: string,
  error: string,
  claimToken?: string,
): Promise<boolean> {
  const fence = claimToken === undefined ? sql`` : sql` and claim_token = ${claimToken}`;
  const rows = await queryRows<{ id: number }>(
    db,
    sql`
    update outbox
       set attempts = attempts + 1, last_error = ${clip(error)},
           claim_token = null, claim_expires_at = null, updated_at = now()
     where idempotency_key = ${key} and status = 'dispatched'${fence}
 returning id`,
  );
  return rows.length > 0;
}

/** dispatched → dispatched: reconcile re-runs a row whose job failed (counted in attempts). */
export async function noteOutboxRerun(db: Executor, id: number): Promise<void> {
  await db.execute(sql`
    update outbox set attempts = attempts + 1, updated_at = now()
     where id = ${id} and status = 'dispatched'`);
}

/** dispatched (held by `claimToken`) → dispatched, unheld: the holder gives the lease back. */
export async function releaseLease(db: Executor, key: string, claimToken: string): Promise<void> {
  await db.execute(sql`
    update outbox set claim_token = null, claim_expires_at = null, updated_at = now()
     where idempotency_key = ${key} and status = 'dispatched' and claim_token = ${claimToken}`);
}

export type EffectClaim =
  | { readonly kind: 'claimed'; readonly target: EffectTargetState }
  /** Another holder's lease is live, or an older effect on the service is unfinished. */
  | { readonly kind: 'busy'; readonly reason: 'held' | 'behind'; readonly status: OutboxStatus }
  | { readonly kind: 'finished'; readonly status: OutboxStatus };

/**
 * dispatched (unheld, or its lease expired) → dispatched, held by `claimToken` until now +
 * `leaseMs` on the database's clock. One statement: it takes the lease only when no older
 * control-plane effect on the same service is unfinished (a resume never overtakes the suspend
 * it undoes), and reads the service and instance the effect is about, so the caller re-checks
 * that it is still wanted before calling out. No lock is held after it returns.
 */
export async function claimEffect(
  db: Db,
  key: string,
  serviceId: string,
  instanceId: string | null,
  claimToken: string,
  leaseMs: number,
): Promise<EffectClaim> {
  const [row] = await queryRows<{
    claimed: boolean;
    status: OutboxStatus;
    behind: boolean;
    svc_status: 'active' | 'suspended' | 'released' | null;
    overdue_hold: boolean | null;
    operator_hold: boolean | null;
    instance_released: boolean | null;
  }>(
    db,
    sql`
    with me as (
      select o.id, o.account_id, o.status,
             exists (select 1 from outbox e
                      where e.kind = 'control-plane' and e.status in ('pending', 'dispatched')
                        and (e.payload ->> 'serviceId') = ${serviceId} and e.id < o.id) as behind
        from outbox o where o.idempotency_key = ${key}
    ),
    claimed as (
      update outbox o
         set claim_token = ${claimToken},
             claim_expires_at = clock_timestamp() + ${leaseMs} * interval '1 millisecond',
             updated_at = now()
        from me
       where o.id = me.id and o.status = 'dispatched' and not me.behind
         and (o.claim_expires_at is null or o.claim_expires_at < clock_timestamp())
   returning o.id
    )
    select exists (select 1 from claimed) as claimed, me.status, me.behind,
           s.status as svc_status, s.overdue_hold, s.operator_hold,
           (select i.released_at is not null from studio_instances i
             where i.id = ${instanceId} and i.account_id = me.account_id) as instance_released
      from me
      left join services s on s.id = ${serviceId} and s.account_id = me.account_id`,
  );
  if (row === undefined) return { kind: 'finished', status: 'failed' };
  if (row.claimed) {
    return {
      kind: 'claimed',
      target: {
        service:
          row.svc_status === null
            ? null
            : {
                status: row.svc_status,
                overdueHold: row.overdue_hold === true,
                operatorHold: row.operator_hold === true,
              },
        instanceReleased: instanceId === null ? null : row.instance_released,
      },
    };
  }
  if (row.status !== 'dispatched' && row.status !== 'pending') {
    return { kind: 'finished', status: row.status };
  }
  return { kind: 'busy', reason: row.behind ? 'behind' : 'held', status: row.status };
}

/**
 * Deletes up to `limit` finished rows (done, failed, superseded) last changed more than
 * `olderThanMs` ago, oldest first; rows locked elsewhere are skipped. Returns how many.
 */
export async function pruneFinishedOutbox(
  db: Executor,
  olderThanMs: number,
  limit: number,
): Promise<number> {
  const rows = await queryRows<{ id: number }>(
    db,
    sql`
    delete from outbox where id in (
      select id from outbox
       where status in ('done', 'failed', 'superseded')
         and updated_at < now() - ${olderThanMs} * interval '1 millisecond'
       order by updated_at
       limit ${limit}
         for update skip locked)
 returning id`,
  );
  return rows.length;
}
