import { sql, type SQL } from 'drizzle-orm';
import { queryRows, type Db, type Tx } from './client';
import { PAUSE_KINDS } from './schema';
import type { EnforcementMode } from '../../domain/modes';

/**
 * The fleet's enforcement mode (table `control_state`, migration 0011) and the fleet-wide
 * events about it (`control_events`). The gates themselves are SQL fragments read inside the
 * statements that evaluate and that claim effects and messages, so every daemon obeys a change
 * from its next statement on, with nothing cached.
 */

export type { EnforcementMode };

/** The mode, as a scalar SQL expression (enforce when the row is missing). */
export const CURRENT_MODE = sql`coalesce((select enforcement_mode from control_state where id = 1), 'enforce')`;

export interface ControlState {
  readonly mode: EnforcementMode;
  /** 'config': ENFORCEMENT_MODE decides at each daemon start; 'operator': an operator did. */
  readonly source: 'config' | 'operator';
  readonly changedBy: string;
  readonly reason: string | null;
  readonly version: number;
  readonly changedAt: Date;
}

interface StateRow {
  enforcement_mode: EnforcementMode;
  source: 'config' | 'operator';
  changed_by: string;
  reason: string | null;
  version: number | string;
  changed_at: Date | string;
}

const toState = (r: StateRow): ControlState => ({
  mode: r.enforcement_mode,
  source: r.source,
  changedBy: r.changed_by,
  reason: r.reason,
  version: Number(r.version),
  changedAt: new Date(r.changed_at),
});

const DEFAULT_STATE: ControlState = {
  mode: 'enforce',
  source: 'config',
  changedBy: 'config',
  reason: null,
  version: 0,
  changedAt: new Date(0),
};

export async function readControlState(db: Db | Tx): Promise<ControlState> {
  const [row] = await queryRows<StateRow>(
    db,
    sql`select enforcement_mode, source, changed_by, reason, version, changed_at
          from control_state where id = 1`,
  );
  return row === undefined ? DEFAULT_STATE : toState(row);
}

export interface ModeChange {
  readonly mode: EnforcementMode;
  readonly actor: string;
  readonly reason: string;
  /** Change only if the stored version is still this one (what the operator last saw). */
  readonly expectedVersion?: number;
}

export type ModeChangeResult =
  | { readonly kind: 'changed'; readonly from: EnforcementMode; readonly state: ControlState }
  | { readonly kind: 'unchanged'; readonly state: ControlState }
  /** `expectedVersion` was given and another change came first. */
  | { readonly kind: 'conflict'; readonly state: ControlState };

/**
 * One statement that changes the mode: it locks the row, updates it when the mode differs and
 * `condition` holds, records the change in `control_events` (from, to, version, who, why), and
 * answers the row as it is after, with whether it changed and the mode before.
 */
async function changeMode(
  db: Db,
  c: {
    readonly mode: EnforcementMode;
    readonly source: 'config' | 'operator';
    readonly actor: string;
    readonly reason: string;
    /** Over `c` (the row) and `prev` (its mode and version before). */
    readonly condition: SQL;
  },
): Promise<{ state: ControlState; changed: boolean; from: EnforcementMode }> {
  const rows = await queryRows<StateRow & { changed: boolean; prev_mode: EnforcementMode }>(
    db,
    sql`
    with prev as (
      select enforcement_mode, version from control_state where id = 1 for update
    ),
    upd as (
      update control_state c
         set enforcement_mode = ${c.mode}, source = ${c.source}, changed_by = ${c.actor},
             reason = ${c.reason}, version = c.version + 1, changed_at = now()
        from prev
       where c.id = 1 and prev.enforcement_mode <> ${c.mode} and ${c.condition}
   returning c.*
    ),
    ev as (
      insert into control_events (kind, detail, actor, reason)
      select 'enforcement-mode-changed',
             jsonb_build_object('from', prev.enforcement_mode, 'to', upd.enforcement_mode,
                                'version', upd.version),
             ${c.actor}, ${c.reason}
        from upd, prev
    )
    select coalesce(u.enforcement_mode, c.enforcement_mode) as enforcement_mode,
           coalesce(u.source, c.source) as source,
           coalesce(u.changed_by, c.changed_by) as changed_by,
           case when u.id is null then c.reason else u.reason end as reason,
           coalesce(u.version, c.version) as version,
           coalesce(u.changed_at, c.changed_at) as changed_at,
           u.id is not null as changed, p.enforcement_mode as prev_mode
      from prev p cross join control_state c left join upd u on true
     where c.id = 1`,
  );
  const row = rows[0];
  if (row === undefined) throw new Error('control_state has no row (migration 0011 not applied)');
  return { state: toState(row), changed: row.changed, from: row.prev_mode };
}

/**
 * An operator sets the mode, recorded with who and why. Two operators at once are serialized by
 * the row lock: the later one sees the earlier one's change, so the stored mode is always that of
 * the last recorded event. With `expectedVersion`, a change made since is a conflict.
 */
export async function setEnforcementMode(db: Db, change: ModeChange): Promise<ModeChangeResult> {
  const expected = change.expectedVersion ?? null;
  const r = await changeMode(db, {
    mode: change.mode,
    source: 'operator',
    actor: change.actor,
    reason: change.reason,
    condition: sql`(${expected}::bigint is null or prev.version = ${expected}::bigint)`,
  });
  if (r.changed) return { kind: 'changed', from: r.from, state: r.state };
  if (r.from === change.mode) return { kind: 'unchanged', state: r.state };
  return { kind: 'conflict', state: r.state };
}

/**
 * At a daemon's start: ENFORCEMENT_MODE decides the mode unless an operator has set it since
 * (then the operator's choice stands, and the caller says so in the log). A change is recorded
 * as an event by `config`.
 */
export async function applyConfiguredMode(
  db: Db,
  mode: EnforcementMode,
): Promise<{ readonly state: ControlState; readonly changed: boolean }> {
  const r = await changeMode(db, {
    mode,
    source: 'config',
    actor: 'config',
    reason: 'ENFORCEMENT_MODE at daemon start',
    condition: sql`c.source = 'config'`,
  });
  return { state: r.state, changed: r.changed };
}

export interface ControlEvent {
  readonly id: number;
  readonly kind: string;
  readonly detail: Record<string, unknown>;
  readonly actor: string;
  readonly reason: string | null;
  readonly createdAt: Date;
}

/** The newest fleet-wide events, newest first. */
export async function recentControlEvents(db: Db, limit: number): Promise<ControlEvent[]> {
  const rows = await queryRows<{
    id: number | string;
    kind: string;
    detail: Record<string, unknown>;
    actor: string;
    reason: string | null;
    created_at: Date | string;
  }>(
    db,
    sql`select id, kind, detail, actor, reason, created_at from control_events
         order by id desc limit ${limit}`,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    kind: r.kind,
    detail: r.detail,
    actor: r.actor,
    reason: r.reason,
    createdAt: new Date(r.created_at),
  }));
}

export interface ShadowReport {
  readonly since: Date;
  readonly kinds: readonly {
    readonly decision: string;
    readonly events: number;
    readonly accounts: number;
    /** Up to `sample` account ids, newest first. */
    readonly sample: readonly string[];
  }[];
}

/**
 * What shadow mode would have done since `since`: per decision kind, how many would-be actions
 * and accounts, with a sample of account ids. Reads the shadow events only (the created_at index
 * bounds it to the window).
 */
export async function shadowReport(db: Db, since: Date, sample: number): Promise<ShadowReport> {
  const rows = await queryRows<{
    decision: string;
    events: number | string;
    accounts: number | string;
    sample: string[] | null;
  }>(
    db,
    sql`
    with w as (
      select account_id, detail ->> 'decision' as decision, id
        from enforcement_events
       where kind = 'shadow-decision' and created_at >= ${since.toISOString()}::timestamptz
    ),
    k as (
      select decision, count(*) as events, count(distinct account_id) as accounts
        from w group by decision
    )
    select k.decision, k.events, k.accounts,
           (select array_agg(s.account_id) from (
              select account_id, max(id) as last from w
               where w.decision = k.decision group by account_id
               order by last desc limit ${sample}) s) as sample
      from k order by k.decision`,
  );
  return {
    since,
    kinds: rows.map((r) => ({
      decision: r.decision,
      events: Number(r.events),
      accounts: Number(r.accounts),
      sample: r.sample ?? [],
    })),
  };
}

export type PauseKind = (typeof PAUSE_KINDS)[number];

/** True while `kind` (an SQL text expression) is paused. */
const pausedKind = (kind: SQL): SQL =>
  sql`exists (select 1 from control_pauses p where p.kind = ${kind})`;

/**
 * True when the control-plane effect row `alias` (an outbox row) is of a paused kind: a suspend
 * while suspensions are paused, a release while releases are. Resumes never are.
 */
export function effectPaused(alias: SQL): SQL {
  return pausedKind(sql`case ${alias}.payload ->> 'op'
                          when 'suspend' then 'suspensions'
                          when 'release' then 'releases' end`);
}

/** True when customer messages may go out: the mode is enforce and messages are not paused. */
export const MESSAGES_GO = sql`(${CURRENT_MODE} = 'enforce' and not ${pausedKind(sql`'messages'`)})`;

/** Why `text` is not a kind that can be paused, or null when it is one. */
export function pauseKindProblem(text: string): string | null {
  if (text === 'resumes') return 'resumes are never paused: a customer who paid is restored';
  return (PAUSE_KINDS as readonly string[]).includes(text)
    ? null
    : `must be one of ${PAUSE_KINDS.join(', ')}`;
}

export interface Pause {
  readonly kind: PauseKind;
  readonly reason: string;
  readonly pausedBy: string;
  readonly pausedAt: Date;
}

export async function listPauses(db: Db | Tx): Promise<Pause[]> {
  const rows = await queryRows<{
    kind: PauseKind;
    reason: string;
    paused_by: string;
    paused_at: Date | string;
  }>(db, sql`select kind, reason, paused_by, paused_at from control_pauses order by kind`);
  return rows.map((r) => ({
    kind: r.kind,
    reason: r.reason,
    pausedBy: r.paused_by,
    pausedAt: new Date(r.paused_at),
  }));
}

/**
 * Pauses a kind of effect (one statement: the row and its `pause-set` event). False when it was
 * paused already (the first pause's reason stands).
 */
export async function setPause(
  db: Db,
  p: { readonly kind: PauseKind; readonly actor: string; readonly reason: string },
): Promise<boolean> {
  const rows = await queryRows<{ kind: string }>(
    db,
    sql`
    with ins as (
      insert into control_pauses (kind, reason, paused_by)
      values (${p.kind}, ${p.reason}, ${p.actor})
      on conflict (kind) do nothing
      returning kind
    ),
    ev as (
      insert into control_events (kind, detail, actor, reason)
      select 'pause-set', jsonb_build_object('pause', ins.kind), ${p.actor}, ${p.reason} from ins
    )
    select kind from ins`,
  );
  return rows.length === 1;
}

/** Lifts a pause (the row goes, a `pause-lifted` event says who and why). False when none. */
export async function liftPause(
  db: Db,
  p: { readonly kind: PauseKind; readonly actor: string; readonly reason: string | null },
): Promise<boolean> {
  const rows = await queryRows<{ kind: string }>(
    db,
    sql`
    with del as (
      delete from control_pauses where kind = ${p.kind}
      returning kind, paused_at, paused_by
    ),
    ev as (
      insert into control_events (kind, detail, actor, reason)
      select 'pause-lifted',
             jsonb_build_object('pause', del.kind, 'pausedAt', del.paused_at,
                                'pausedBy', del.paused_by),
             ${p.actor}, ${p.reason}
        from del
    )
    select kind from del`,
  );
  return rows.length === 1;
}
