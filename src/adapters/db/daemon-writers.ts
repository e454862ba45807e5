import type { Channel } from '../../domain/snapshot';
import type { Db } from './client';
import { enforcementEvents, notifications, outbox } from './schema';

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
    accountId: event.accountId,
    kind: event.kind,
    episodeSeq: event.episodeSeq ?? null,
    detail: event.detail ?? {},
    actor: event.actor ?? 'daemon',
    idempotencyKey: event.idempotencyKey ?? null,
  };
}

/** Appends an audit event. Returns its id, or null when its idempotency key was already used. */
export async function appendEvent(db: Db, event: EventInput): Promise<number | null> {
  const rows = await db
    .insert(enforcementEvents)
    .values(eventRow(event))
    .onConflictDoNothing({ target: enforcementEvents.idempotencyKey })
    .returning({ id: enforcementEvents.id });
  return rows[0]?.id ?? null;
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
 * Many rows in one statement each: an evaluation writes its events, messages and effects with
 * three round trips instead of one per row. Same idempotency as the single-row writers.
 */

/** Appends audit events; returns how many were new. */
export async function appendEvents(db: Db, events: readonly EventInput[]): Promise<number> {
  if (events.length === 0) return 0;
  const rows = await db
    .insert(enforcementEvents)
    .values(events.map(eventRow))
    .onConflictDoNothing({ target: enforcementEvents.idempotencyKey })
    .returning({ id: enforcementEvents.id });
  return rows.length;
}

/** Queues effects; returns the keys that were new (an existing key is left as it is). */
export async function insertOutboxRows(
  db: Db,
  entries: readonly OutboxInput[],
): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const rows = await db
    .insert(outbox)
    .values(
      entries.map((entry) => ({
        idempotencyKey: entry.idempotencyKey,
        kind: entry.kind,
        accountId: entry.accountId,
        payload: entry.payload,
        ...(entry.availableAt === undefined ? {} : { availableAt: entry.availableAt }),
      })),
    )
    .onConflictDoNothing({ target: outbox.idempotencyKey })
    .returning({ key: outbox.idempotencyKey });
  return new Set(rows.map((r) => r.key));
}

/** Records messages to send; returns the dedupe keys that were new. */
export async function insertNotifications(
  db: Db,
  messages: readonly NotificationInput[],
): Promise<Set<string>> {
  if (messages.length === 0) return new Set();
  const rows = await db
    .insert(notifications)
    .values(
      messages.map((message) => ({
        dedupeKey: message.dedupeKey,
        accountId: message.accountId,
        channel: message.channel,
        template: message.template,
        locale: message.locale,
        recipient: message.recipient,
        params: message.params,
        ...(message.notBefore === undefined ? {} : { notBefore: message.notBefore }),
      })),
    )
    .onConflictDoNothing({ target: notifications.dedupeKey })
    .returning({ key: notifications.dedupeKey });
  return new Set(rows.map((r) => r.key));
}
