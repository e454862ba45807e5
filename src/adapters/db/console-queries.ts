import { sql } from 'drizzle-orm';
import type { StudioInstanceSnapshot } from '../../domain/snapshot';
import { queryRows, type Db } from './client';

/**
 * Reads behind the operator console (src/http/console/). Every query is bounded: a LIMIT on
 * every row list, counts capped, and each served by an index (migration 0014 adds the search
 * and per-account ones).
 */

const toDate = (v: Date | string | null): Date | null => (v === null ? null : new Date(v));
const num = (v: number | string | null): number => Number(v ?? 0);

/** `LIKE` prefix pattern of literal text: the wildcards and the escape itself are escaped. */
export function likePrefix(text: string): string {
  return `${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export interface AccountHit {
  readonly id: string;
  readonly email: string | null;
  readonly phone: string | null;
  readonly enforcementState: string;
  readonly currency: string;
  readonly availableBalanceMinor: number;
  readonly exact: boolean;
}

/**
 * Accounts whose id, email (case-insensitive) or phone equals or starts with `q`; exact matches
 * first, then by id. One page of `pageSize` (plus one row, to tell whether there is a next).
 * Each field contributes at most `candidates` matches, read in its index's order (a short prefix
 * matches most of the table: only that many rows are read per field, and paging ends there).
 */
export async function searchAccounts(
  db: Db,
  q: string,
  page: number,
  pageSize: number,
  candidates = 1_000,
): Promise<{ hits: AccountHit[]; more: boolean }> {
  const text = q.trim();
  if (text === '') return { hits: [], more: false };
  const prefix = likePrefix(text);
  const lowerPrefix = likePrefix(text.toLowerCase());
  const rows = await queryRows<{
    id: string;
    email: string | null;
    phone: string | null;
    enforcement_state: string;
    currency: string;
    available_balance_minor: number | string;
    exact: boolean;
  }>(
    db,
    sql`select id, email, phone, enforcement_state, currency, available_balance_minor,
               (id = ${text} or lower(email) = lower(${text}) or phone = ${text}) as exact
          from accounts
         where id in ((select id from accounts where id like ${prefix} limit ${candidates})
                      union (select id from accounts where lower(email) like ${lowerPrefix}
                              limit ${candidates})
                      union (select id from accounts where phone like ${prefix} limit ${candidates}))
         order by exact desc, id
         limit ${pageSize + 1} offset ${page * pageSize}`,
  );
  return {
    more: rows.length > pageSize,
    hits: rows.slice(0, pageSize).map((r) => ({
      id: r.id,
      email: r.email,
      phone: r.phone,
      enforcementState: r.enforcement_state,
      currency: r.currency,
      availableBalanceMinor: num(r.available_balance_minor),
      exact: r.exact,
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// One account.

export interface ServiceView {
  readonly id: string;
  readonly kind: string;
  readonly planType: string;
  readonly status: string;
  readonly overdueHold: boolean;
  readonly operatorHold: boolean;
  readonly suspendedAt: Date | null;
}

/** A studio instance as the account page shows it: what a snapshot holds of it. */
export type StudioView = StudioInstanceSnapshot;

export interface PlanView {
  readonly id: string;
  readonly kind: string;
  readonly totalUnits: number;
  readonly usedUnits: number;
  readonly expiresAt: Date;
  readonly thresholds: unknown;
}

export interface EventView {
  readonly at: Date;
  readonly kind: string;
  readonly actor: string;
  readonly episodeSeq: number | null;
  readonly detail: Record<string, unknown>;
}

export interface MessageView {
  readonly at: Date;
  readonly dedupeKey: string;
  readonly channel: string;
  readonly template: string;
  readonly status: string;
  readonly providerId: string | null;
  readonly messageId: string | null;
  readonly lastError: string | null;
  readonly sentAt: Date | null;
  readonly deliveredAt: Date | null;
}

export interface EffectView {
  readonly at: Date;
  readonly updatedAt: Date;
  readonly key: string;
  readonly kind: string;
  readonly status: string;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly payload: Record<string, unknown>;
}

/** Services, studio instances and live resource plans of an account (at most `limit` each). */
export async function accountHoldings(
  db: Db,
  accountId: string,
  limit: number,
): Promise<{ services: ServiceView[]; studios: StudioView[]; plans: PlanView[] }> {
  const [services, studios, plans] = await Promise.all([
    queryRows<{
      id: string;
      kind: string;
      plan_type: string;
      status: string;
      overdue_hold: boolean;
      operator_hold: boolean;
      suspended_at: Date | string | null;
    }>(
      db,
      sql`select id, kind, plan_type, status, overdue_hold, operator_hold, suspended_at
            from services where account_id = ${accountId} order by id limit ${limit}`,
    ),
    queryRows<{
      id: string;
      service_id: string;
      name: string;
      streaming: boolean;
      release_due_at: Date | string | null;
      released_at: Date | string | null;
    }>(
      db,
      sql`select id, service_id, name, streaming, release_due_at, released_at
            from studio_instances where account_id = ${accountId}
           order by released_at desc nulls first, release_due_at nulls last, id limit ${limit}`,
    ),
    queryRows<{
      id: string;
      kind: string;
      total_units: number | string;
      used_units: number | string;
      expires_at: Date | string;
      alert_thresholds: unknown;
    }>(
      db,
      sql`select id, kind, total_units, used_units, expires_at, alert_thresholds
            from resource_plans where account_id = ${accountId} and expires_at > now()
           order by expires_at, id limit ${limit}`,
    ),
  ]);
  return {
    services: services.map((s) => ({
      id: s.id,
      kind: s.kind,
      planType: s.plan_type,
      status: s.status,
      overdueHold: s.overdue_hold,
      operatorHold: s.operator_hold,
      suspendedAt: toDate(s.suspended_at),
    })),
    studios: studios.map((i) => ({
      id: i.id,
      serviceId: i.service_id,
      name: i.name,
      streaming: i.streaming,
      releaseDueAt: toDate(i.release_due_at),
      releasedAt: toDate(i.released_at),
    })),
    plans: plans.map((p) => ({
      id: p.id,
      kind: p.kind,
      totalUnits: num(p.total_units),
      usedUnits: num(p.used_units),
      expiresAt: new Date(p.expires_at),
      thresholds: p.alert_thresholds,
    })),
  };
}

/**
 * The newest `limit` events, messages (without the recipient) and effects of an account. A
 * message's own effect and the daemon's timers are left out: the message row tells the story.
 */
export async function accountHistory(
  db: Db,
  accountId: string,
  limit: number,
): Promise<{ events: EventView[]; messages: MessageView[]; effects: EffectView[] }> {
  const [events, messages, effects] = await Promise.all([
    queryRows<{
      created_at: Date | string;
      kind: string;
      actor: string;
      episode_seq: number | null;
      detail: Record<string, unknown>;
    }>(
      db,
      sql`select created_at, kind, actor, episode_seq, detail from enforcement_events
           where account_id = ${accountId} order by created_at desc, id desc limit ${limit}`,
    ),
    queryRows<{
      created_at: Date | string;
      dedupe_key: string;
      channel: string;
      template: string;
      status: string;
      provider_id: string | null;
      message_id: string | null;
      last_error: string | null;
      sent_at: Date | string | null;
      delivered_at: Date | string | null;
    }>(
      db,
      sql`select created_at, dedupe_key, channel, template, status, provider_id, message_id,
                 last_error, sent_at, delivered_at
            from notifications where account_id = ${accountId} order by id desc limit ${limit}`,
    ),
    queryRows<{
      created_at: Date | string;
      updated_at: Date | string;
      idempotency_key: string;
      kind: string;
      status: string;
      attempts: number;
      last_error: string | null;
      payload: Record<string, unknown>;
    }>(
      db,
      sql`select created_at, updated_at, idempotency_key, kind, status, attempts, last_error, payload
            from outbox where account_id = ${accountId} and kind not in ('notify', 'wake')
           order by id desc limit ${limit}`,
    ),
  ]);
  return {
    events: events.map((r) => ({
      at: new Date(r.created_at),
      kind: r.kind,
      actor: r.actor,
      episodeSeq: r.episode_seq,
      detail: r.detail,
    })),
    messages: messages.map((m) => ({
      at: new Date(m.created_at),
      dedupeKey: m.dedupe_key,
      channel: m.channel,
      template: m.template,
      status: m.status,
      providerId: m.provider_id,
      messageId: m.message_id,
      lastError: m.last_error,
      sentAt: toDate(m.sent_at),
      deliveredAt: toDate(m.delivered_at),
    })),
    effects: effects.map((x) => ({
      at: new Date(x.created_at),
      updatedAt: new Date(x.updated_at),
      key: x.idempotency_key,
      kind: x.kind,
      status: x.status,
      attempts: x.attempts,
      lastError: x.last_error,
      payload: x.payload,
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// The fleet.

export interface StateCounts {
  /** Exact below the cap; beyond it the planner's estimate (statistics), never less than the cap. */
  readonly totalEstimate: number;
  readonly protected: number;
  readonly suspended: number;
  /** In good standing below the low-balance threshold, as of each account's last evaluation. */
  readonly lowBalance: number;
  readonly releasePending: number;
  /** Counts stop at this many (the cap is shown as "≥"). */
  readonly cap: number;
}

export async function fleetStateCounts(db: Db, cap: number): Promise<StateCounts> {
  const [states, [pending], [total]] = await Promise.all([
    queryRows<{ state: string; n: number | string }>(
      db,
      sql`select state, count(*) as n from (
            select enforcement_state as state from accounts
             where enforcement_state = 'protected' limit ${cap}) p group by state
          union all
          select state, count(*) from (
            select enforcement_state as state from accounts
             where enforcement_state = 'suspended' limit ${cap}) s group by state
          union all
          select 'low-balance', count(*) from (
            select 1 from accounts where low_balance limit ${cap}) l`,
    ),
    queryRows<{ n: number | string }>(
      db,
      sql`select count(*) as n from (select 1 from studio_instances
            where released_at is null and release_due_at is not null limit ${cap}) r`,
    ),
    // The planner's estimate when the statistics put the table at or beyond the cap (an exact
    // count reads the whole table, and even counting up to the cap reads 100,000 index entries);
    // otherwise counted exactly up to the cap. The count is a sub-select PostgreSQL runs only
    // when needed.
    queryRows<{ n: number | string }>(
      db,
      sql`select case when e.n >= ${cap} then e.n
                      else (select count(*) from (select 1 from accounts limit ${cap}) a) end as n
            from (select coalesce(max(reltuples), -1)::bigint as n from pg_class
                   where oid = 'accounts'::regclass) e`,
    ),
  ]);
  const of = (s: string) => num(states.find((r) => r.state === s)?.n ?? 0);
  return {
    totalEstimate: num(total?.n ?? 0),
    protected: of('protected'),
    suspended: of('suspended'),
    lowBalance: of('low-balance'),
    releasePending: num(pending?.n ?? 0),
    cap,
  };
}

export interface HourBucket {
  readonly hour: Date;
  readonly suspended: number;
  readonly resumed: number;
}

/**
 * Services suspended and resumed per hour over the last `hours` hours, oldest first; at most
 * `cap` events are read (the figure says so when reached).
 */
export async function hourlyEnforcement(
  db: Db,
  hours: number,
  cap: number,
): Promise<{ buckets: HourBucket[]; capped: boolean }> {
  const rows = await queryRows<{ hour: Date | string; kind: string; n: number | string }>(
    db,
    sql`select date_trunc('hour', created_at) as hour, kind, count(*) as n from (
          select created_at, kind from enforcement_events
           where created_at > now() - make_interval(hours => ${hours})
             and kind in ('service-suspended', 'service-resumed')
           limit ${cap}) e
        group by 1, 2`,
  );
  const read = rows.reduce((t, r) => t + num(r.n), 0);
  const start = Math.floor(Date.now() / 3_600_000) * 3_600_000 - (hours - 1) * 3_600_000;
  const buckets: HourBucket[] = [];
  for (let i = 0; i < hours; i += 1) {
    const at = start + i * 3_600_000;
    const count = (kind: string) =>
      num(rows.find((r) => new Date(r.hour).getTime() === at && r.kind === kind)?.n ?? 0);
    buckets.push({
      hour: new Date(at),
      suspended: count('service-suspended'),
      resumed: count('service-resumed'),
    });
  }
  return { buckets, capped: read >= cap };
}

export interface PendingRelease {
  readonly instanceId: string;
  readonly accountId: string;
  readonly name: string;
  readonly releaseDueAt: Date;
}

export async function pendingReleases(db: Db, limit: number): Promise<PendingRelease[]> {
  const rows = await queryRows<{
    id: string;
    account_id: string;
    name: string;
    release_due_at: Date | string;
  }>(
    db,
    sql`select id, account_id, name, release_due_at from studio_instances
         where released_at is null and release_due_at is not null
         order by release_due_at limit ${limit}`,
  );
  return rows.map((r) => ({
    instanceId: r.id,
    accountId: r.account_id,
    name: r.name,
    releaseDueAt: new Date(r.release_due_at),
  }));
}

export interface Failure {
  readonly what: 'effect' | 'message';
  readonly key: string;
  readonly accountId: string;
  readonly kind: string;
  readonly status: string;
  readonly lastError: string | null;
  readonly at: Date;
}

/** The most recent failed effects and messages, at most `limit` of each. */
export async function recentFailures(db: Db, limit: number): Promise<Failure[]> {
  const [effects, messages] = await Promise.all([
    queryRows<{
      idempotency_key: string;
      account_id: string;
      kind: string;
      status: string;
      last_error: string | null;
      updated_at: Date | string;
    }>(
      db,
      sql`select idempotency_key, account_id, kind, status, last_error, updated_at from outbox
           where status = 'failed' order by updated_at desc limit ${limit}`,
    ),
    queryRows<{
      dedupe_key: string;
      account_id: string;
      channel: string;
      template: string;
      status: string;
      last_error: string | null;
      updated_at: Date | string;
    }>(
      db,
      sql`select dedupe_key, account_id, channel, template, status, last_error, updated_at
            from notifications where status in ('failed', 'undeliverable')
           order by updated_at desc limit ${limit}`,
    ),
  ]);
  return [
    ...effects.map((x) => ({
      what: 'effect' as const,
      key: x.idempotency_key,
      accountId: x.account_id,
      kind: x.kind,
      status: x.status,
      lastError: x.last_error,
      at: new Date(x.updated_at),
    })),
    ...messages.map((m) => ({
      what: 'message' as const,
      key: m.dedupe_key,
      accountId: m.account_id,
      kind: `${m.channel} ${m.template}`,
      status: m.status,
      lastError: m.last_error,
      at: new Date(m.updated_at),
    })),
  ].sort((a, b) => b.at.getTime() - a.at.getTime());
}
