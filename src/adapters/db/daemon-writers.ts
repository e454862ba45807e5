import { sql } from 'drizzle-orm';
import type { Channel } from '../../domain/snapshot';
import { queryRows, type Db } from './client';

/**
 * Inserts the daemon makes in the transaction that applies a decision. Each is idempotent on its
 * unique key (`ON CONFLICT DO NOTHING`): re-running a decision after a crash or on a second daemon
 * inserts nothing, and the return value says whether this call did the insert.
 */

export interface EventInput {
  readonly accountId: string;
  /** Short code, e.g. "episode-opened", "services-suspended". */
  readonly kind: string;
  readonly episodeSeq?: number | null;
  readonly detail?: Record<string, unknown>;
  /** 'daemon' (default) or the operator who triggered the action. */
  readonly actor?: string;
  /** When set, the event is recorded at most once. */
  readonly idempotencyKey?: string | null;
}

/** The row an event becomes (defaults: no episode, empty detail, actor 'daemon'). */
function eventRow(event: EventInput) {
  return {
    account_id: event.accountId,
    kind: event.kind,
    episode_seq: event.episodeSeq ?? null,
    detail: event.detail ?? {},
    actor: event.actor ?? 'daemon',
    idempotency_key: event.idempotencyKey ?? null,
  };
}

/** Appends an audit event. Returns its id, or null when its idempotency key was already used. */
export async function appendEvent(db: Db, event: EventInput): Promise<number | null> {
  const [id] = await insertEvents(db, [event]);
  return id ?? null;
}

export interface OutboxInput {
  /** Deterministic key of the effect (no ':'); also the BullMQ job id. */
  readonly idempotencyKey: string;
  readonly kind: string;
  readonly accountId: string;
  /** Ids only (no personal data, no snapshots): handlers reload state. */
  readonly payload: Record<string, unknown>;
  /** Not relayed before this instant; default: the transaction's now(). */
  readonly availableAt?: Date;
}

/** Queues an effect. True when inserted; false when an effect with this key already exists. */
export async function insertOutbox(db: Db, entry: OutboxInput): Promise<boolean> {
  return (await insertOutboxRows(db, [entry])).size === 1;
}

export interface NotificationInput {
  /** Unique per message (decision key + channel); no ':'. */
  readonly dedupeKey: string;
  readonly accountId: string;
  readonly channel: Channel;
  readonly template: string;
  readonly locale: string;
  /** Email address or E.164 number. Personal data: never log it. */
  readonly recipient: string;
  readonly params: Record<string, unknown>;
  /** Not sent before this instant (quiet hours); default: the transaction's now(). */
  readonly notBefore?: Date;
}

/** Records a message to send. True when inserted; false when this dedupe key already exists. */
export async function insertNotification(db: Db, message: NotificationInput): Promise<boolean> {
  return (await insertNotifications(db, [message])).size === 1;
}

/*
 * Many rows in one statement each, and the statement's text does not depend on how many: the rows
 * travel as one jsonb parameter (`jsonb_to_recordset`), so PostgreSQL (and postgres.js, which
 * prepares each text once per connection) sees one statement shape whatever the batch size. An
 * evaluation of one account or of a page of accounts writes its events, messages and effects with
 * three statements. Same idempotency as the single-row writers.
 */

/** Appends audit events; returns how many were new. */
export async function appendEvents(db: Db, events: readonly EventInput[]): Promise<number> {
  return (await insertEvents(db, events)).length;
}

/** The ids of the events inserted (an event whose key was already used is not). */
async function insertEvents(db: Db, events: readonly EventInput[]): Promise<number[]> {
  if (events.length === 0) return [];
  const rows = await queryRows<{ id: string }>(
    db,
    sql`
    insert into enforcement_events (account_id, kind, episode_seq, detail, actor, idempotency_key)
    select r.account_id, r.kind, r.episode_seq, r.detail, r.actor, r.idempotency_key
      from jsonb_to_recordset(${JSON.stringify(events.map(eventRow))}::jsonb)
           as r(account_id text, kind text, episode_seq integer, detail jsonb, actor text,
                idempotency_key text)
    on conflict (idempotency_key) do nothing
    returning id`,
  );
  return rows.map((r) => Number(r.id));
}

/**
 * The first of the items with the same key. An `on conflict do update` statement fails when two
 * of its rows share a key (`cannot affect row a second time`), even when nothing is updated.
 */
function distinctBy<T>(items: readonly T[], keyOf: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = keyOf(item);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Queues effects; returns the keys that were new (an existing key is left as it is). */
export async function insertOutboxRows(
  db: Db,
  entries: readonly OutboxInput[],
): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const rows = await queryRows<{ key: string }>(
    db,
    sql`
    insert into outbox (idempotency_key, kind, account_id, payload, available_at)
    select r.idempotency_key, r.kind, r.account_id, r.payload, coalesce(r.available_at, now())
      from jsonb_to_recordset(${JSON.stringify(
        entries.map((entry) => ({
          idempotency_key: entry.idempotencyKey,
          kind: entry.kind,
          account_id: entry.accountId,
          payload: entry.payload,
          available_at: entry.availableAt?.toISOString() ?? null,
        })),
      )}::jsonb)
           as r(idempotency_key text, kind text, account_id text, payload jsonb,
                available_at timestamptz)
    on conflict (idempotency_key) do nothing
    returning idempotency_key as key`,
  );
  return new Set(rows.map((r) => r.key));
}

/**
 * Records messages to send; returns the dedupe keys that were new. An existing key is left as it
 * is, except a superseded low-balance reminder: its key names the period (one reminder a local
 * day), so the balance falling below the threshold again in that period, after a top-up
 * superseded the first reminder before it went out, sends it back to pending with the new
 * decision's recipient and figures, and returns its key (its superseded outbox row is the
 * caller's to reopen: `reopenOutboxKeys`). A reminder sent once is never sent again in its period.
 */
export async function insertNotifications(
  db: Db,
  messages: readonly NotificationInput[],
): Promise<Set<string>> {
  if (messages.length === 0) return new Set();
  const rows = await queryRows<{ key: string }>(
    db,
    sql`
    insert into notifications (dedupe_key, account_id, channel, template, locale, recipient,
                               params, not_before)
    select r.dedupe_key, r.account_id, r.channel, r.template, r.locale, r.recipient, r.params,
           coalesce(r.not_before, now())
      from jsonb_to_recordset(${JSON.stringify(
        distinctBy(messages, (message) => message.dedupeKey).map((message) => ({
          dedupe_key: message.dedupeKey,
          account_id: message.accountId,
          channel: message.channel,
          template: message.template,
          locale: message.locale,
          recipient: message.recipient,
          params: message.params,
          not_before: message.notBefore?.toISOString() ?? null,
        })),
      )}::jsonb)
           as r(dedupe_key text, account_id text, channel text, template text, locale text,
                recipient text, params jsonb, not_before timestamptz)
    on conflict (dedupe_key) do update
       set status = 'pending', recipient = excluded.recipient, locale = excluded.locale,
           params = excluded.params, not_before = excluded.not_before, last_error = null,
           provider_id = null, message_id = null, sent_at = null, delivered_at = null,
           claim_token = null, claim_expires_at = null, retried_at = now(), updated_at = now()
     where notifications.status = 'superseded' and notifications.template = 'low-balance'
       and excluded.template = 'low-balance'
    returning dedupe_key as key`,
  );
  return new Set(rows.map((r) => r.key));
}
