import { sql } from 'drizzle-orm';
import {
  admit,
  breakerLimit,
  type Admission,
  type BreakerLimits,
  type GateRequest,
  type LedgerStatus,
} from '../../domain/breaker';
import { queryRows, type Db, type Tx } from './client';

/**
 * The mass-suspension breaker's state (`breaker_state`, one row) and ledger (`breaker_ledger`);
 * the rules are src/domain/breaker.ts. Admission runs inside the evaluation's transaction, and
 * only when the evaluation decided a suspension or a studio release.
 */

/** The share's base is recounted when older than this, ms. */
const GOOD_STANDING_MAX_AGE_S = 60;

/**
 * Suspensions admitted within the window and since the last reset, as a scalar over the breaker
 * row `b` (the partial index breaker_ledger_admitted_idx serves it).
 */
const ADMITTED_IN_WINDOW = sql`(select count(*) from breaker_ledger l
  where l.kind = 'suspend' and l.status = 'allowed'
    and l.decided_at > greatest(now() - b.window_seconds * interval '1 second',
                                coalesce(b.reset_at, '-infinity'::timestamptz)))`;

/** The limits as the breaker row stores them. */
interface LimitColumns {
  count_limit: number;
  window_seconds: number;
  share_milli_pct: number;
}

const limitsOf = (row: LimitColumns): BreakerLimits => ({
  count: row.count_limit,
  windowMs: row.window_seconds * 1000,
  sharePct: row.share_milli_pct / 1000,
});

const textArray = (values: readonly string[]): string =>
  `{${values.map((v) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;

export interface AdmissionResult extends Admission {
  /** The trip the held rows belong to (0 when never tripped). */
  readonly tripSeq: number;
}

/**
 * Admits a batch's gated decisions: locks the breaker's row (evaluations of other batches and
 * daemons that gate decisions wait here until this transaction ends, so the window's count is
 * exact), reads the count admitted within the window, the share's base and what the ledger
 * already says of these keys, decides (pure `admit`), and writes the new ledger rows, the trip
 * and its control event. Three statements: the lock is taken by a statement of its own so that
 * the reads see what the previous holder committed.
 */
export async function admitGated(
  tx: Tx,
  requests: readonly GateRequest[],
): Promise<AdmissionResult> {
  await tx.execute(sql`select 1 from breaker_state where id = 1 for update`);
  const [state] = await queryRows<{
    enabled: boolean;
    count_limit: number;
    window_seconds: number;
    share_milli_pct: number;
    tripped: boolean;
    trip_seq: number;
    good_standing: number | string;
    recounted: boolean;
    admitted: number | string;
    known: Record<string, LedgerStatus>;
  }>(
    tx,
    sql`
    select b.enabled, b.count_limit, b.window_seconds, b.share_milli_pct,
           b.tripped_at is not null as tripped, b.trip_seq,
           b.counted_at is null
             or b.counted_at <= now() - ${GOOD_STANDING_MAX_AGE_S}::int * interval '1 second' as recounted,
           case when b.counted_at > now() - ${GOOD_STANDING_MAX_AGE_S}::int * interval '1 second'
                then b.good_standing
                else (select count(*) from accounts where enforcement_state = 'active') end
             as good_standing,
           ${ADMITTED_IN_WINDOW} as admitted,
           (select coalesce(jsonb_object_agg(l.decision_key, l.status), '{}'::jsonb)
              from breaker_ledger l
             where l.decision_key = any(${textArray(requests.map((r) => r.key))}::text[])) as known
      from breaker_state b where b.id = 1`,
  );
  if (state === undefined) throw new Error('breaker_state has no row (migration 0013 not applied)');
  const goodStanding = Number(state.good_standing);
  const limits = limitsOf(state);
  const limit = breakerLimit(limits, goodStanding);
  const admitted = Number(state.admitted);
  const admission = admit(
    { enabled: state.enabled, tripped: state.tripped, limit, admitted },
    requests,
    new Map(Object.entries(state.known)),
  );
  if (admission.rows.length === 0 && !state.recounted) {
    return { ...admission, tripSeq: state.trip_seq };
  }
  const rows = JSON.stringify(
    admission.rows.map((r) => ({
      key: r.key,
      account_id: r.accountId,
      kind: r.kind,
      status: r.status,
      detail: r.detail,
    })),
  );
  const [written] = await queryRows<{ trip_seq: number }>(
    tx,
    sql`
    with st as (
      update breaker_state
         set good_standing = case when ${state.recounted}::boolean then ${goodStanding}::bigint else good_standing end,
             counted_at = case when ${state.recounted}::boolean then now() else counted_at end,
             tripped_at = case when ${admission.trips}::boolean then now() else tripped_at end,
             trip_seq = trip_seq + case when ${admission.trips}::boolean then 1 else 0 end
       where id = 1
   returning trip_seq
    ),
    ins as (
      insert into breaker_ledger (decision_key, account_id, kind, status, detail, trip_seq)
      select r.key, r.account_id, r.kind, r.status, r.detail,
             case when r.status = 'held' then st.trip_seq end
        from jsonb_to_recordset(${rows}::jsonb)
             as r(key text, account_id text, kind text, status text, detail jsonb)
       cross join st
          on conflict (decision_key) do nothing
    ),
    ev as (
      insert into control_events (kind, detail, actor, reason)
      select 'breaker-tripped',
             jsonb_build_object('tripSeq', st.trip_seq, 'limit', ${limit}::int,
                                'admitted', ${admitted}::int,
                                'windowSeconds', ${state.window_seconds}::int,
                                'goodStanding', ${goodStanding}::bigint),
             'daemon', 'more suspensions decided within the window than the limit'
        from st where ${admission.trips}::boolean
    )
    select trip_seq from st`,
  );
  return { ...admission, tripSeq: written?.trip_seq ?? state.trip_seq };
}

/**
 * At a daemon's start: SUSPENSION_BREAKER's limits (null: off) become the fleet's, recorded as a
 * `breaker-configured` event when they change. Trips and held decisions are left as they are.
 */
export async function applyConfiguredBreaker(
  db: Db,
  limits: BreakerLimits | null,
): Promise<boolean> {
  const enabled = limits !== null;
  const count = limits?.count ?? 100;
  const windowSeconds = Math.max(1, Math.round((limits?.windowMs ?? 600_000) / 1000));
  const share = Math.round((limits?.sharePct ?? 1) * 1000);
  const rows = await queryRows<{ id: number }>(
    db,
    sql`
    with upd as (
      update breaker_state
         set enabled = ${enabled}::boolean, count_limit = ${count}::int,
             window_seconds = ${windowSeconds}::int, share_milli_pct = ${share}::int
       where id = 1
         and (enabled, count_limit, window_seconds, share_milli_pct)
             is distinct from (${enabled}::boolean, ${count}::int, ${windowSeconds}::int, ${share}::int)
   returning id
    ),
    ev as (
      insert into control_events (kind, detail, actor, reason)
      select 'breaker-configured',
             jsonb_build_object('enabled', ${enabled}::boolean, 'count', ${count}::int,
                                'windowSeconds', ${windowSeconds}::int,
                                'sharePct', ${share / 1000}::float8),
             'config', 'SUSPENSION_BREAKER at daemon start'
        from upd
    )
    select id from upd`,
  );
  return rows.length > 0;
}

export interface HeldDecision {
  readonly id: number;
  readonly key: string;
  readonly accountId: string;
  readonly kind: 'suspend' | 'release';
  readonly tripSeq: number | null;
  readonly decidedAt: Date;
  readonly detail: Record<string, unknown>;
}

export interface BreakerStatus {
  readonly enabled: boolean;
  readonly limits: BreakerLimits;
  readonly tripped: boolean;
  readonly trippedAt: Date | null;
  readonly tripSeq: number;
  readonly resetAt: Date | null;
  /** The limit at the last count of accounts in good standing. */
  readonly limit: number;
  readonly goodStanding: number;
  /** Suspensions admitted within the window (since the last reset). */
  readonly admitted: number;
  readonly heldCount: number;
  /** Held decisions, oldest first, from `afterId` on, at most `limit` of them. */
  readonly held: readonly HeldDecision[];
}

/** The breaker and a page of what it holds. */
export async function readBreaker(
  db: Db | Tx,
  page: { readonly limit: number; readonly afterId?: number },
): Promise<BreakerStatus> {
  const [b] = await queryRows<{
    enabled: boolean;
    count_limit: number;
    window_seconds: number;
    share_milli_pct: number;
    tripped_at: Date | string | null;
    trip_seq: number;
    reset_at: Date | string | null;
    good_standing: number | string;
    admitted: number | string;
    held_count: number | string;
  }>(
    db,
    sql`
    select b.*,
           ${ADMITTED_IN_WINDOW} as admitted,
           (select count(*) from breaker_ledger l where l.status = 'held') as held_count
      from breaker_state b where b.id = 1`,
  );
  if (b === undefined) throw new Error('breaker_state has no row (migration 0013 not applied)');
  const held = await queryRows<{
    id: number | string;
    decision_key: string;
    account_id: string;
    kind: 'suspend' | 'release';
    trip_seq: number | null;
    decided_at: Date | string;
    detail: Record<string, unknown>;
  }>(
    db,
    sql`
    select id, decision_key, account_id, kind, trip_seq, decided_at, detail
      from breaker_ledger
     where status = 'held' and id > ${page.afterId ?? 0}
     order by id limit ${page.limit}`,
  );
  const limits = limitsOf(b);
  const date = (v: Date | string | null) => (v === null ? null : new Date(v));
  return {
    enabled: b.enabled,
    limits,
    tripped: b.tripped_at !== null,
    trippedAt: date(b.tripped_at),
    tripSeq: b.trip_seq,
    resetAt: date(b.reset_at),
    limit: breakerLimit(limits, Number(b.good_standing)),
    goodStanding: Number(b.good_standing),
    admitted: Number(b.admitted),
    heldCount: Number(b.held_count),
    held: held.map((r) => ({
      id: Number(r.id),
      key: r.decision_key,
      accountId: r.account_id,
      kind: r.kind,
      tripSeq: r.trip_seq,
      decidedAt: new Date(r.decided_at),
      detail: r.detail,
    })),
  };
}

/** Which held decisions an operator acts on: all of them, or these keys. */
export type HeldSelection = { readonly all: true } | { readonly keys: readonly string[] };

export interface Settled {
  readonly key: string;
  readonly accountId: string;
  readonly kind: 'suspend' | 'release';
}

/**
 * held → approved | rejected for the selection, in one statement: the ledger rows, one event per
 * account decision (`breaker-approved` / `breaker-rejected`, keyed so never twice) and one
 * control event with the count. Rows no longer held are left as they are. Returns those moved.
 */
export async function settleHeld(
  db: Db,
  to: 'approved' | 'rejected',
  selection: HeldSelection,
  actor: string,
  reason: string | null,
): Promise<Settled[]> {
  const all = 'all' in selection;
  const keys = 'keys' in selection ? selection.keys : [];
  const kind = to === 'approved' ? 'breaker-approved' : 'breaker-rejected';
  const rows = await queryRows<{ decision_key: string; account_id: string; kind: Settled['kind'] }>(
    db,
    sql`
    with moved as (
      update breaker_ledger
         set status = ${to}::text, settled_at = now(), settled_by = ${actor}::text,
             reason = ${reason}::text
       where status = 'held'
         and (${all}::boolean or decision_key = any(${textArray(keys)}::text[]))
   returning decision_key, account_id, kind, trip_seq, detail
    ),
    ev as (
      insert into enforcement_events (account_id, kind, episode_seq, detail, actor, idempotency_key)
      select m.account_id, ${kind}::text, (m.detail ->> 'episodeSeq')::int,
             jsonb_build_object('key', m.decision_key, 'decision', m.kind, 'tripSeq', m.trip_seq,
                                'reason', ${reason}::text),
             ${actor}::text, ${kind}::text || '-' || m.decision_key
        from moved m
          on conflict (idempotency_key) do nothing
    ),
    ce as (
      insert into control_events (kind, detail, actor, reason)
      select ${kind}::text, jsonb_build_object('count', count(*), 'all', ${all}::boolean),
             ${actor}::text, ${reason}::text
        from moved having count(*) > 0
    )
    select decision_key, account_id, kind from moved order by decision_key`,
  );
  return rows.map((r) => ({ key: r.decision_key, accountId: r.account_id, kind: r.kind }));
}

/**
 * Closes a tripped breaker: new suspensions are admitted again, counted from now (what was
 * admitted before the reset no longer counts). Held decisions stay held until approved or
 * rejected. False when it was not tripped.
 */
export async function resetBreaker(db: Db, actor: string, reason: string): Promise<boolean> {
  const rows = await queryRows<{ id: number }>(
    db,
    sql`
    with upd as (
      update breaker_state set tripped_at = null, reset_at = now()
       where id = 1 and tripped_at is not null
   returning id, trip_seq
    ),
    ev as (
      insert into control_events (kind, detail, actor, reason)
      select 'breaker-reset', jsonb_build_object('tripSeq', upd.trip_seq), ${actor}::text,
             ${reason}::text
        from upd
    )
    select id from upd`,
  );
  return rows.length > 0;
}

/**
 * The trip the operators have not yet been alerted of, claimed for this caller (one statement:
 * across daemons, exactly one caller gets each trip). Null when there is none.
 */
export async function claimTripAlert(
  db: Db,
): Promise<{ tripSeq: number; trippedAt: Date; held: number; limit: number } | null> {
  const [row] = await queryRows<{
    trip_seq: number;
    tripped_at: Date | string;
    held: number | string;
    count_limit: number;
    good_standing: number | string;
    share_milli_pct: number;
    window_seconds: number;
  }>(
    db,
    sql`
    update breaker_state set alerted_seq = trip_seq
     where id = 1 and tripped_at is not null and alerted_seq < trip_seq
 returning trip_seq, tripped_at, count_limit, good_standing, share_milli_pct, window_seconds,
           (select count(*) from breaker_ledger where status = 'held') as held`,
  );
  if (row === undefined) return null;
  return {
    tripSeq: row.trip_seq,
    trippedAt: new Date(row.tripped_at),
    held: Number(row.held),
    limit: breakerLimit(limitsOf(row), Number(row.good_standing)),
  };
}

/**
 * Alerts the operators (email and SMS, OPERATOR_EMAILS / OPERATOR_PHONES) of a trip not yet
 * alerted of: once per trip across every daemon (claimTripAlert). True when this call claimed it.
 */
export async function alertBreakerTrip(
  db: Db,
  alerts: { raise(alert: string, summary: string, detail?: string): Promise<boolean> },
): Promise<boolean> {
  const trip = await claimTripAlert(db);
  if (trip === null) return false;
  await alerts.raise(
    `breaker-tripped-${trip.tripSeq}`,
    `mass-suspension breaker tripped: more than ${trip.limit} suspensions decided within the window; ${trip.held} held so far`,
    'Further suspensions and every studio release are held until approved or rejected. ' +
      'Review them with GET /v1/breaker or `overdue-worker breaker`; approve or reject with ' +
      'POST /v1/breaker/approve or /v1/breaker/reject, then close the breaker with ' +
      'POST /v1/breaker/reset.',
  );
  return true;
}
