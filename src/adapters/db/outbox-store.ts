import { sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { causedByRowData } from '../../describe-error';
import type { EffectTargetState } from '../../domain/effect-wanted';
import { queryRows, type Db, type Tx } from './client';
import { Coalescer } from './coalesce';
import { CURRENT_MODE, effectPaused } from './control-store';
import { appendEvent, type EventInput } from './daemon-writers';
import type { OUTBOX_STATUSES } from './schema';

/**
 * The one owner of outbox state. Every statement that changes an outbox row is here, and each
 * names the status it moves from (as BullMQ's moveToFinished and graphile-worker's
 * completeJobs / failJobs do), so a late or repeated caller changes nothing:
 *
 *   pending ──relay──► dispatched ──settle──► done | failed | superseded
 *      └────────────settle (cancelled, unknown kind, no job needed)──────┘
 *   failed (an undeliverable message's done) ──operator's retry──► pending
 *
 * A control-plane effect is also claimed under a lease while unfinished (claimEffects): its
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

/**
 * failed → pending (or done → pending, for a message the carrier reported undeliverable): an
 * operator's retry. The relay dispatches the row again, removing the finished job left under its
 * key, and the job re-checks it as on a first attempt (an effect against its service's state at
 * the claim, a message with the notice check). True when this call moved the row.
 */
export async function reopenOutbox(
  tx: Executor,
  key: string,
  from: 'failed' | 'done',
): Promise<boolean> {
  return (await reopenOutboxKeys(tx, [key], from)).length > 0;
}

/**
 * `from` → pending for rows named by key: an operator's retry (`reopenOutbox`), or superseded →
 * pending for the outbox rows of low-balance reminders sent back to pending by an evaluation
 * (`insertNotifications`). Returns the keys moved.
 */
export async function reopenOutboxKeys(
  tx: Executor,
  keys: readonly string[],
  from: 'failed' | 'done' | 'superseded',
): Promise<string[]> {
  if (keys.length === 0) return [];
  const rows = await queryRows<{ idempotency_key: string }>(
    tx,
    sql`
    update outbox
       set status = 'pending', last_error = null, claim_token = null, claim_expires_at = null,
           available_at = now(), updated_at = now()
     where idempotency_key in (select jsonb_array_elements_text(${JSON.stringify(keys)}::jsonb))
       and status = ${from}
 returning idempotency_key`,
  );
  return rows.map((r) => r.idempotency_key);
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
 * pending | dispatched → the same status: a retryable attempt (the control plane unavailable) is
 * counted, its reason kept, and the lease released so the retry may claim at once (a pending row
 * is claimed when an operator runs its effect by hand before the relay dispatched it). With a
 * token, only the holder's note lands. True when it did.
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
     where idempotency_key = ${key} and status in ('pending', 'dispatched')${fence}
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

/** pending | dispatched (held by `claimToken`) → the same, unheld: the holder gives it back. */
export async function releaseLease(db: Executor, key: string, claimToken: string): Promise<void> {
  await db.execute(sql`
    update outbox set claim_token = null, claim_expires_at = null, updated_at = now()
     where idempotency_key = ${key} and status in ('pending', 'dispatched')
       and claim_token = ${claimToken}`);
}

export type EffectClaim =
  | {
      readonly kind: 'claimed';
      readonly entry: OutboxEntry;
      /** The service and instance named by the row's payload, read in the claiming statement. */
      readonly target: EffectTargetState;
    }
  /** Another holder's lease is live, or an older effect on the service is unfinished. */
  | {
      readonly kind: 'busy';
      readonly entry: OutboxEntry;
      /**
       * `mode`: enforcement is shadow or off, so nothing is claimed until it is enforce again;
       * `paused`: an operator paused this kind of effect.
       */
      readonly reason: 'held' | 'behind' | 'mode' | 'paused';
      readonly status: OutboxStatus;
    }
  | { readonly kind: 'finished'; readonly entry: OutboxEntry; readonly status: OutboxStatus }
  /** No outbox row has this key. */
  | { readonly kind: 'missing' };

export interface EffectClaimRequest {
  readonly key: string;
  /** Fresh per attempt: the lease is this holder's; claiming again with it is a no-op. */
  readonly claimToken: string;
  readonly leaseMs: number;
}

/**
 * pending | dispatched (unheld, its lease expired, or already held by the same token) → the same
 * status, held by each request's `claimToken` until now + `leaseMs` on the database's clock. One
 * statement for the whole batch, its text the same for any number of requests
 * (jsonb_to_recordset): it reads each row, takes the lease only when no older control-plane
 * effect on the same service (the payload's serviceId) is unfinished (a resume never overtakes
 * the suspend it undoes), and reads the service and instance the effect is about, so the caller
 * re-checks that it is still wanted before calling out. No lock is held after it returns. Keys
 * must be distinct. One answer per request, in order.
 *
 * A pending row is claimed too: its job exists, so either a relay pass enqueued it and holds the
 * row locked until it commits (the claim waits for that lock and then holds a dispatched row), or
 * an operator triggered it by hand. Claiming dispatched rows only would skip a row read just
 * before the relay's commit, and its effect would wait a retry for nothing.
 */
export async function claimEffects(
  db: Executor,
  requests: readonly EffectClaimRequest[],
): Promise<EffectClaim[]> {
  if (requests.length === 0) return [];
  const input = JSON.stringify(
    requests.map((r, i) => ({ i, key: r.key, token: r.claimToken, lease_ms: r.leaseMs })),
  );
  const rows = await queryRows<{
    i: number;
    claimed: boolean;
    id: number | string;
    kind: string;
    account_id: string;
    payload: unknown;
    status: OutboxStatus;
    attempts: number;
    behind: boolean;
    enforcing: boolean;
    paused: boolean;
    has_instance: boolean;
    svc_status: 'active' | 'suspended' | 'released' | null;
    overdue_hold: boolean | null;
    operator_hold: boolean | null;
    instance_released: boolean | null;
  }>(
    db,
    sql`
    with x as (
      select * from jsonb_to_recordset(${input}::jsonb)
                 as x(i int, key text, token text, lease_ms bigint)
    ),
    me as (
      select x.i, x.token, x.lease_ms, o.id, o.kind, o.account_id, o.payload, o.status,
             o.attempts, o.payload ->> 'serviceId' as service_id,
             o.payload ->> 'instanceId' as instance_id,
             exists (select 1 from outbox e
                      where e.kind = 'control-plane' and e.status in ('pending', 'dispatched')
                        and (e.payload ->> 'serviceId') = (o.payload ->> 'serviceId')
                        and e.id < o.id
                        and not ${effectPaused(sql`e`)}) as behind,
             ${CURRENT_MODE} = 'enforce' as enforcing, ${effectPaused(sql`o`)} as paused
        from x join outbox o on o.idempotency_key = x.key
    ),
    claimed as (
      update outbox o
         set claim_token = me.token,
             claim_expires_at = clock_timestamp() + me.lease_ms * interval '1 millisecond',
             updated_at = now()
        from me
       where o.id = me.id and o.status in ('pending', 'dispatched') and not me.behind
         and me.enforcing and not me.paused
         and (o.claim_expires_at is null or o.claim_expires_at < clock_timestamp()
              or o.claim_token = me.token)
   returning o.id, o.claim_token
    )
    select me.i, c.id is not null as claimed, me.id, me.kind, me.account_id, me.payload,
           me.status, me.attempts, me.behind, me.enforcing, me.paused,
           me.instance_id is not null as has_instance,
           s.status as svc_status, s.overdue_hold, s.operator_hold,
           (select i.released_at is not null from studio_instances i
             where i.id = me.instance_id and i.account_id = me.account_id) as instance_released
      from me
      left join claimed c on c.id = me.id and c.claim_token = me.token
      left join services s on s.id = me.service_id and s.account_id = me.account_id`,
  );
  const out: EffectClaim[] = requests.map(() => ({ kind: 'missing' }));
  for (const row of rows) {
    const entry: OutboxEntry = {
      id: Number(row.id),
      key: requests[row.i]?.key ?? '',
      kind: row.kind,
      accountId: row.account_id,
      payload: row.payload,
      status: row.status,
      attempts: row.attempts,
    };
    out[row.i] = row.claimed
      ? {
          kind: 'claimed',
          entry,
          target: {
            service:
              row.svc_status === null
                ? null
                : {
                    status: row.svc_status,
                    overdueHold: row.overdue_hold === true,
                    operatorHold: row.operator_hold === true,
                  },
            instanceReleased: row.has_instance ? row.instance_released : null,
          },
        }
      : row.status !== 'dispatched' && row.status !== 'pending'
        ? { kind: 'finished', entry, status: row.status }
        : {
            kind: 'busy',
            entry,
            reason: !row.enforcing
              ? 'mode'
              : row.paused
                ? 'paused'
                : row.behind
                  ? 'behind'
                  : 'held',
            status: row.status,
          };
  }
  return out;
}

/** claimEffects for one key. */
export async function claimEffect(
  db: Executor,
  key: string,
  claimToken: string,
  leaseMs: number,
): Promise<EffectClaim> {
  const [claim] = await claimEffects(db, [{ key, claimToken, leaseMs }]);
  return claim ?? { kind: 'missing' };
}

export interface SettleRequest {
  readonly key: string;
  readonly settlement: Settlement;
}

/**
 * pending | dispatched → done | failed | superseded for many rows in one statement, its text the
 * same for any number of rows (jsonb_to_recordset): each row moves only if it is unfinished and,
 * when its settlement carries a claim token, still held under that token (a fenced-off holder
 * records nothing); the events of the rows that moved are appended in the same statement (on
 * their idempotency keys, so never twice). Keys must be distinct. One answer per request, in
 * order: true when that row moved.
 */
export async function settleOutboxRows(
  db: Executor,
  requests: readonly SettleRequest[],
): Promise<boolean[]> {
  if (requests.length === 0) return [];
  const input = JSON.stringify(
    requests.map(({ key, settlement: s }, i) => ({
      i,
      key,
      status: s.status,
      reason: clip(s.reason),
      token: s.claimToken ?? null,
      ev_account: s.event?.accountId ?? null,
      ev_kind: s.event?.kind ?? null,
      ev_episode: s.event?.episodeSeq ?? null,
      ev_detail: s.event?.detail ?? null,
      ev_actor: s.event?.actor ?? null,
      ev_key: s.event?.idempotencyKey ?? null,
    })),
  );
  const rows = await queryRows<{ i: number }>(
    db,
    sql`
    with x as (
      select * from jsonb_to_recordset(${input}::jsonb)
                 as x(i int, key text, status text, reason text, token text, ev_account text,
                      ev_kind text, ev_episode int, ev_detail jsonb, ev_actor text, ev_key text)
    ),
    moved as (
      update outbox o
         set status = x.status, last_error = x.reason,
             claim_token = null, claim_expires_at = null, updated_at = now()
        from x
       where o.idempotency_key = x.key and o.status in ('pending', 'dispatched')
         and (x.token is null or o.claim_token = x.token)
   returning o.idempotency_key
    ),
    ev as (
      insert into enforcement_events (account_id, kind, episode_seq, detail, actor, idempotency_key)
      select x.ev_account, x.ev_kind, x.ev_episode, coalesce(x.ev_detail, '{}'::jsonb),
             coalesce(x.ev_actor, 'daemon'), x.ev_key
        from x join moved m on m.idempotency_key = x.key
       where x.ev_kind is not null
          on conflict (idempotency_key) do nothing
    )
    select x.i from x join moved m on m.idempotency_key = x.key`,
  );
  const out = requests.map(() => false);
  for (const row of rows) out[row.i] = true;
  return out;
}

/** Largest batch of the coalesced claim and settle statements (rows per statement). */
const MAX_EFFECT_BATCH = 256;

interface EffectBatches {
  readonly claims: Coalescer<EffectClaimRequest, EffectClaim>;
  readonly settles: Coalescer<SettleRequest, boolean>;
}

const batchesByDb = new WeakMap<Db, EffectBatches>();

function effectBatches(db: Db): EffectBatches {
  let batches = batchesByDb.get(db);
  if (batches === undefined) {
    batches = {
      claims: new Coalescer((requests) => claimEffects(db, requests), {
        maxBatch: MAX_EFFECT_BATCH,
        keyOf: (r) => r.key,
        retryAlone: causedByRowData,
      }),
      settles: new Coalescer((requests) => settleOutboxRows(db, requests), {
        maxBatch: MAX_EFFECT_BATCH,
        keyOf: (r) => r.key,
        retryAlone: causedByRowData,
      }),
    };
    batchesByDb.set(db, batches);
  }
  return batches;
}

/**
 * claimEffect, coalesced with the claims of the other effect jobs running at the same moment on
 * this database handle (see coalesce.ts): one claimEffects statement per batch.
 */
export function claimEffectBatched(db: Db, request: EffectClaimRequest): Promise<EffectClaim> {
  return effectBatches(db).claims.load(request);
}

/**
 * settleOutbox, coalesced with the settles of the other jobs finishing at the same moment on this
 * database handle: one settleOutboxRows statement per batch; resolves (true when this call moved
 * the row) as soon as its own batch has run.
 */
export function settleOutboxBatched(db: Db, key: string, s: Settlement): Promise<boolean> {
  return effectBatches(db).settles.load({ key, settlement: s });
}
