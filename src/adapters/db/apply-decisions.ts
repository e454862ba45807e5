import { sql } from 'drizzle-orm';
import type { Decision, Notice } from '../../domain/decisions';
import { nextSmsSendInstant } from '../../domain/quiet-hours';
import type { RuleSettings } from '../../domain/rules';
import type { AccountSnapshot } from '../../domain/snapshot';
import { queryRows, type Tx } from './client';
import {
  appendEvents,
  insertNotifications,
  insertOutboxRows,
  type EventInput,
  type NotificationInput,
  type OutboxInput,
} from './daemon-writers';
import { reopenOutboxKeys, type ControlPayload } from './outbox-store';

/**
 * Writes evaluations' decisions inside the transaction that loaded their snapshots (the account
 * rows are locked). In two steps:
 *
 * - `planWrites` (pure) turns one account's decisions into the rows to write: state changes,
 *   events, messages and outbox rows, one small function per decision kind;
 * - `applyWrites` writes the plans of any number of accounts with a fixed set of statements (one
 *   per kind of change, each taking its rows as one jsonb parameter), so a page of 200 accounts
 *   costs the same dozen statements as one account, and their text never changes.
 *
 * State changes are idempotent (re-applying is a no-op), and every effect outside the database is
 * an outbox row whose unique key is the decision's idempotency key: a decision applied twice, by
 * a retry or by a second daemon, leaves one row.
 */

export type OutboxKind = 'control-plane' | 'notify' | 'wake' | 'cancel-timer';

export interface ApplyOptions {
  readonly rules: RuleSettings;
  /** 'daemon', or the operator who asked for the evaluation (written to the event log). */
  readonly actor: string;
  /** The account's addresses as stored (notices are addressed from them). */
  readonly contacts: { readonly email: string | null; readonly phone: string | null };
}

/** The account columns an evaluation may change; absent ones keep their value. */
export interface AccountPatch {
  episodeSeq?: number;
  episodeStartedAt?: Date | null;
  lastEpisodeEndedAt?: Date | null;
  enforcementState?: string;
  lowBalanceQuietUntil?: Date;
  /** Whether the account is in good standing below its low-balance threshold (every evaluation). */
  lowBalance?: boolean;
}

/** Everything one account's evaluation writes. */
export interface AccountWrites {
  readonly accountId: string;
  readonly patch: AccountPatch;
  readonly suspend: { serviceId: string; episodeSeq: number }[];
  readonly resume: { serviceId: string }[];
  readonly clearHolds: { serviceId: string }[];
  readonly scheduleRelease: { instanceId: string; dueAt: Date; episodeSeq: number }[];
  readonly cancelRelease: { instanceId: string }[];
  readonly release: { instanceId: string; serviceId: string }[];
  readonly events: EventInput[];
  readonly effects: OutboxInput[];
  readonly messages: NotificationInput[];
}

export interface ApplySummary {
  /** Outbox rows these evaluations created (effects not already known), by account. */
  readonly newEffects: ReadonlyMap<string, number>;
}

type Plan = AccountWrites & { readonly now: Date; readonly options: ApplyOptions };
type Of<K extends Decision['kind']> = Extract<Decision, { kind: K }>;

function event(
  w: Plan,
  kind: string,
  key: string,
  episodeSeq: number | null,
  detail: Record<string, unknown>,
): void {
  w.events.push({
    accountId: w.accountId,
    kind,
    episodeSeq,
    detail,
    actor: w.options.actor,
    idempotencyKey: key,
  });
}

function outbox(
  w: Plan,
  key: string,
  kind: OutboxKind,
  payload: Record<string, unknown>,
  availableAt?: Date,
): void {
  w.effects.push({
    idempotencyKey: key,
    kind,
    accountId: w.accountId,
    payload,
    ...(availableAt ? { availableAt } : {}),
  });
}

/**
 * A notice becomes one message per channel. Params carry the notice's episode (and a release
 * warning's instance): the sender re-checks at send time that the notice is still true
 * (src/domain/notice-check.ts).
 */
function notify(
  w: Plan,
  snapshot: AccountSnapshot,
  key: string,
  notice: Notice,
  episodeSeq: number | null,
  instanceId?: string,
): void {
  if (notice.channels.length === 0) {
    event(w, 'notice-unreachable', `${key}-unreachable`, episodeSeq, {
      template: notice.template,
    });
    return;
  }
  for (const channel of notice.channels) {
    const recipient = channel === 'email' ? w.options.contacts.email : w.options.contacts.phone;
    if (recipient === null) continue;
    const notBefore =
      channel === 'sms'
        ? nextSmsSendInstant(w.now, snapshot.timeZone, w.options.rules.quietHours)
        : w.now;
    w.messages.push({
      dedupeKey: `${key}-${channel}`,
      accountId: w.accountId,
      channel,
      template: notice.template,
      locale: snapshot.locale,
      recipient,
      params: {
        ...notice.params,
        ...(episodeSeq !== null ? { episodeSeq } : {}),
        ...(instanceId !== undefined ? { instanceId } : {}),
      },
      notBefore,
    });
  }
}

function controlEffect(
  w: Plan,
  key: string,
  op: ControlPayload['op'],
  serviceId: string,
  episodeSeq: number,
  instanceId?: string,
): void {
  const payload: ControlPayload = {
    op,
    serviceId,
    ...(instanceId !== undefined ? { instanceId } : {}),
    episodeSeq,
  };
  outbox(w, key, 'control-plane', payload);
}

function planSuspend(
  w: Plan,
  s: AccountSnapshot,
  d: Of<'suspend-services'> | Of<'suspend-studio'>,
): void {
  for (const action of d.services) {
    w.suspend.push({ serviceId: action.serviceId, episodeSeq: d.episodeSeq });
    event(w, 'service-suspended', action.key, d.episodeSeq, {
      serviceId: action.serviceId,
      callControlPlane: action.callControlPlane,
      ...(d.kind === 'suspend-services'
        ? { cause: d.cause, overdueMinor: d.overdueMinor }
        : { studio: true }),
    });
    if (action.callControlPlane) {
      controlEffect(w, action.key, 'suspend', action.serviceId, d.episodeSeq);
    }
  }
  notify(w, s, d.key, d.notice, d.episodeSeq);
}

function planResume(w: Plan, s: AccountSnapshot, d: Of<'resume-services'>): void {
  for (const action of d.services) {
    w.resume.push({ serviceId: action.serviceId });
    event(w, 'service-resumed', action.key, d.episodeSeq, {
      serviceId: action.serviceId,
      callControlPlane: action.callControlPlane,
    });
    if (action.callControlPlane) {
      controlEffect(w, action.key, 'resume', action.serviceId, d.episodeSeq);
    }
  }
  notify(w, s, d.key, d.notice, d.episodeSeq);
}

function planRelease(w: Plan, s: AccountSnapshot, d: Of<'release-studio'>): void {
  w.release.push({ instanceId: d.instanceId, serviceId: d.serviceId });
  event(w, 'studio-released', d.key, d.episodeSeq, { instanceId: d.instanceId });
  controlEffect(w, d.key, 'release', d.serviceId, d.episodeSeq, d.instanceId);
  notify(w, s, d.key, d.notice, d.episodeSeq);
}

function planDecision(w: Plan, s: AccountSnapshot, d: Decision): void {
  switch (d.kind) {
    case 'invalid-snapshot':
      event(w, 'invalid-snapshot', d.key, null, { reason: d.reason });
      return;
    case 'open-episode':
      Object.assign(w.patch, { episodeSeq: d.episodeSeq, episodeStartedAt: d.startedAt });
      event(w, 'episode-opened', d.key, d.episodeSeq, { startedAt: d.startedAt.toISOString() });
      return;
    case 'close-episode':
      Object.assign(w.patch, { episodeStartedAt: null, lastEpisodeEndedAt: d.endedAt });
      event(w, 'episode-closed', d.key, d.episodeSeq, { endedAt: d.endedAt.toISOString() });
      return;
    case 'set-state':
      w.patch.enforcementState = d.to;
      event(w, 'state-changed', d.key, null, { from: d.from, to: d.to });
      return;
    case 'suspend-services':
    case 'suspend-studio':
      planSuspend(w, s, d);
      return;
    case 'resume-services':
      planResume(w, s, d);
      return;
    case 'clear-released-holds':
      for (const serviceId of d.serviceIds) w.clearHolds.push({ serviceId });
      event(w, 'released-holds-cleared', d.key, d.episodeSeq, { serviceIds: d.serviceIds });
      return;
    case 'schedule-release':
      w.scheduleRelease.push({
        instanceId: d.instanceId,
        dueAt: d.dueAt,
        episodeSeq: d.episodeSeq,
      });
      event(w, 'release-scheduled', d.key, d.episodeSeq, {
        instanceId: d.instanceId,
        dueAt: d.dueAt.toISOString(),
      });
      // The timer is a delayed evaluation at the due instant; the evaluation decides the release.
      outbox(w, d.key, 'wake', { at: d.dueAt.getTime() }, d.dueAt);
      return;
    case 'cancel-release':
      w.cancelRelease.push({ instanceId: d.instanceId });
      event(w, 'release-cancelled', d.key, d.episodeSeq, { instanceId: d.instanceId });
      outbox(w, d.key, 'cancel-timer', { jobKey: d.releaseKey });
      return;
    case 'release-studio':
      planRelease(w, s, d);
      return;
    case 'release-warning':
      notify(w, s, d.key, d.notice, d.episodeSeq, d.instanceId);
      return;
    case 'low-balance-reminder':
      w.patch.lowBalanceQuietUntil = d.until;
      notify(w, s, d.key, d.notice, null);
      return;
    case 'plan-quota-alert':
    case 'plan-expiry-reminder':
    case 'payg-revert-notice':
      notify(w, s, d.key, d.notice, null);
      return;
    case 'overdue-reminder':
      notify(w, s, d.key, d.notice, d.episodeSeq);
      return;
    case 'wake':
      outbox(w, d.key, 'wake', { at: d.at.getTime() }, d.at);
      return;
  }
}

/** The rows one account's decisions write (pure). */
export function planWrites(
  snapshot: AccountSnapshot,
  decisions: readonly Decision[],
  now: Date,
  options: ApplyOptions,
): AccountWrites {
  const writes: AccountWrites = {
    accountId: snapshot.accountId,
    patch: {},
    suspend: [],
    resume: [],
    clearHolds: [],
    scheduleRelease: [],
    cancelRelease: [],
    release: [],
    events: [],
    effects: [],
    messages: [],
  };
  const plan: Plan = { ...writes, now, options };
  for (const d of decisions) planDecision(plan, snapshot, d);
  writes.patch.lowBalance = decisions.some((d) => d.kind === 'low-balance-reminder');
  return writes;
}

/** The rows of every plan for one statement, tagged with their account. */
function rowsOf<T extends object>(
  plans: readonly AccountWrites[],
  pick: (w: AccountWrites) => readonly T[],
): string | null {
  const rows = plans.flatMap((w) => pick(w).map((r) => ({ ...r, accountId: w.accountId })));
  return rows.length === 0 ? null : JSON.stringify(rows);
}

/** Episode and state changes are versioned; the low-balance columns alone are not. */
function versioned(patch: AccountPatch): boolean {
  return Object.keys(patch).some((k) => k !== 'lowBalanceQuietUntil' && k !== 'lowBalance');
}

/**
 * Writes the plans of many accounts (all locked by this transaction) with one statement per kind
 * of change. The order of the statements is the order a single account's decisions need:
 * suspensions, resumptions and hold clearing before releases (a release may mark the service
 * released; suspend and resume never touch a released service), messages before their effects
 * (a message's effect is queued only if the message is new).
 */
export async function applyWrites(
  tx: Tx,
  plans: readonly AccountWrites[],
  now: Date,
): Promise<ApplySummary> {
  const at = now.toISOString();
  const suspend = rowsOf(plans, (w) => w.suspend);
  if (suspend !== null) {
    await tx.execute(sql`
      update services s
         set updated_at = now(), overdue_hold = true, overdue_episode_seq = r."episodeSeq", status = 'suspended',
             suspended_at = case when s.status = 'active' then ${at}::timestamptz
                                 else s.suspended_at end
        from jsonb_to_recordset(${suspend}::jsonb)
             as r("serviceId" text, "accountId" text, "episodeSeq" integer)
       where s.id = r."serviceId" and s.account_id = r."accountId" and s.status <> 'released'`);
  }
  const resume = rowsOf(plans, (w) => w.resume);
  if (resume !== null) {
    await tx.execute(sql`
      update services s
         set updated_at = now(), overdue_hold = false, overdue_episode_seq = null,
             status = case when s.operator_hold then 'suspended' else 'active' end,
             resumed_at = case when s.operator_hold then s.resumed_at
                               else ${at}::timestamptz end
        from jsonb_to_recordset(${resume}::jsonb) as r("serviceId" text, "accountId" text)
       where s.id = r."serviceId" and s.account_id = r."accountId" and s.status <> 'released'`);
  }
  const clearHolds = rowsOf(plans, (w) => w.clearHolds);
  if (clearHolds !== null) {
    await tx.execute(sql`
      update services s set updated_at = now(), overdue_hold = false, overdue_episode_seq = null
        from jsonb_to_recordset(${clearHolds}::jsonb) as r("serviceId" text, "accountId" text)
       where s.id = r."serviceId" and s.account_id = r."accountId" and s.status = 'released'`);
  }
  const schedule = rowsOf(plans, (w) =>
    w.scheduleRelease.map((r) => ({ ...r, dueAt: r.dueAt.toISOString() })),
  );
  if (schedule !== null) {
    await tx.execute(sql`
      update studio_instances i
         set updated_at = now(), release_due_at = r."dueAt", release_episode_seq = r."episodeSeq"
        from jsonb_to_recordset(${schedule}::jsonb)
             as r("instanceId" text, "accountId" text, "dueAt" timestamptz, "episodeSeq" integer)
       where i.id = r."instanceId" and i.account_id = r."accountId"
         and i.release_due_at is null and i.released_at is null`);
  }
  const cancel = rowsOf(plans, (w) => w.cancelRelease);
  if (cancel !== null) {
    await tx.execute(sql`
      update studio_instances i
         set updated_at = now(), release_due_at = null, release_episode_seq = null
        from jsonb_to_recordset(${cancel}::jsonb) as r("instanceId" text, "accountId" text)
       where i.id = r."instanceId" and i.account_id = r."accountId" and i.released_at is null`);
  }
  const release = rowsOf(plans, (w) => w.release);
  if (release !== null) {
    // A studio service is released once none of its instances is left. The outer update sees
    // the instances as they were before this statement, hence the exclusion of those just
    // released.
    await tx.execute(sql`
      with released as (
        update studio_instances i set updated_at = now(), released_at = ${at}::timestamptz
          from jsonb_to_recordset(${release}::jsonb)
               as r("instanceId" text, "serviceId" text, "accountId" text)
         where i.id = r."instanceId" and i.account_id = r."accountId" and i.released_at is null
        returning i.id, r."serviceId" as service_id, i.account_id)
      update services s set updated_at = now(), status = 'released', released_at = ${at}::timestamptz
        from (select distinct service_id, account_id from released) x
       where s.id = x.service_id and s.account_id = x.account_id and s.status <> 'released'
         and not exists (select 1 from studio_instances i
                          where i.service_id = s.id and i.released_at is null
                            and i.id not in (select id from released))`);
  }
  await patchAccounts(tx, plans, at);
  const messages = plans.flatMap((w) => w.messages);
  const newMessages = await insertNotifications(tx, messages);
  const effects = plans.flatMap((w) => w.effects);
  for (const m of messages) {
    if (newMessages.has(m.dedupeKey)) {
      effects.push({
        idempotencyKey: m.dedupeKey,
        kind: 'notify',
        accountId: m.accountId,
        payload: { channel: m.channel },
        ...(m.notBefore ? { availableAt: m.notBefore } : {}),
      });
    }
  }
  const newKeys = await insertOutboxRows(tx, effects);
  // A low-balance reminder sent back to pending still has its superseded outbox row.
  const reopened = messages
    .map((m) => m.dedupeKey)
    .filter((key) => newMessages.has(key) && !newKeys.has(key));
  for (const key of await reopenOutboxKeys(tx, reopened, 'superseded')) newKeys.add(key);
  await appendEvents(
    tx,
    plans.flatMap((w) => w.events),
  );
  const newEffects = new Map<string, number>();
  for (const e of effects) {
    if (newKeys.has(e.idempotencyKey)) {
      newEffects.set(e.accountId, (newEffects.get(e.accountId) ?? 0) + 1);
    }
  }
  return { newEffects };
}

/**
 * One statement for every evaluated account: `evaluated_at` always (the periodic scan skips
 * accounts evaluated recently, SCAN_RECHECK_INTERVAL), the patched columns where the patch names
 * them (a key present with null sets null), and the version bumped for episode and state changes.
 */
async function patchAccounts(tx: Tx, plans: readonly AccountWrites[], at: string): Promise<void> {
  if (plans.length === 0) return;
  const rows = JSON.stringify(
    plans.map((w) => ({
      id: w.accountId,
      bump: versioned(w.patch),
      p: Object.fromEntries(
        Object.entries(w.patch).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
      ),
    })),
  );
  await queryRows(
    tx,
    sql`
    update accounts a
       set episode_seq = case when r.p ? 'episodeSeq' then (r.p ->> 'episodeSeq')::integer
                              else a.episode_seq end,
           episode_started_at = case when r.p ? 'episodeStartedAt'
                                     then (r.p ->> 'episodeStartedAt')::timestamptz
                                     else a.episode_started_at end,
           last_episode_ended_at = case when r.p ? 'lastEpisodeEndedAt'
                                        then (r.p ->> 'lastEpisodeEndedAt')::timestamptz
                                        else a.last_episode_ended_at end,
           enforcement_state = case when r.p ? 'enforcementState'
                                    then r.p ->> 'enforcementState'
                                    else a.enforcement_state end,
           low_balance_quiet_until = case when r.p ? 'lowBalanceQuietUntil'
                                          then (r.p ->> 'lowBalanceQuietUntil')::timestamptz
                                          else a.low_balance_quiet_until end,
           low_balance = case when r.p ? 'lowBalance' then (r.p ->> 'lowBalance')::boolean
                              else a.low_balance end,
           evaluated_at = ${at}::timestamptz,
           updated_at = now(),
           version = a.version + case when r.bump then 1 else 0 end
      from jsonb_to_recordset(${rows}::jsonb) as r(id text, bump boolean, p jsonb)
     where a.id = r.id`,
  );
}
