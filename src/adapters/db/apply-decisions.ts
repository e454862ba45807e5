import { and, eq, inArray, isNull, ne, sql } from 'drizzle-orm';
import type { Decision, Notice } from '../../domain/decisions';
import { nextSmsSendInstant } from '../../domain/quiet-hours';
import type { RuleSettings } from '../../domain/rules';
import type { AccountSnapshot } from '../../domain/snapshot';
import type { Tx } from './client';
import {
  appendEvents,
  insertNotifications,
  insertOutboxRows,
  type EventInput,
  type NotificationInput,
  type OutboxInput,
} from './daemon-writers';
import { accounts, services, studioInstances } from './schema';

/**
 * Writes one evaluation's decisions inside the transaction that loaded the snapshot (the
 * account row is locked). State changes are applied idempotently (re-applying is a no-op), and
 * every effect outside the database becomes an outbox row whose unique key is the decision's
 * idempotency key: a decision applied twice, by a retry or by a second daemon, leaves one row.
 */

export type OutboxKind = 'control-plane' | 'notify' | 'wake' | 'cancel-timer';

/** What the control-plane job does; stored as the outbox row's payload. */
export interface ControlPayload {
  readonly op: 'suspend' | 'resume' | 'release';
  readonly serviceId: string;
  readonly instanceId?: string;
  readonly episodeSeq: number;
}

export interface ApplyOptions {
  readonly rules: RuleSettings;
  /** 'daemon', or the operator who asked for the evaluation (written to the event log). */
  readonly actor: string;
  /** The account's addresses when the caller loaded them already (else read when needed). */
  readonly contacts?: { readonly email: string | null; readonly phone: string | null };
}

export interface ApplySummary {
  /** Outbox rows this evaluation created (effects not already known). */
  readonly newEffects: number;
}

type AccountPatch = Partial<typeof accounts.$inferInsert>;

/**
 * State changes are written as the decisions come; events, messages and effects are collected
 * and written at the end with one multi-row statement each (messages first: a message's effect
 * is queued only if the message is new).
 */
export async function applyDecisions(
  tx: Tx,
  snapshot: AccountSnapshot,
  decisions: readonly Decision[],
  now: Date,
  options: ApplyOptions,
): Promise<ApplySummary> {
  const accountId = snapshot.accountId;
  let contacts = options.contacts;
  let accountPatch: AccountPatch | null = null;
  const events: EventInput[] = [];
  const effects: OutboxInput[] = [];
  const messages: NotificationInput[] = [];

  const patchAccount = (patch: AccountPatch) => {
    accountPatch = { ...(accountPatch ?? {}), ...patch };
  };
  const event = (
    kind: string,
    key: string,
    episodeSeq: number | null,
    detail: Record<string, unknown>,
  ) => {
    events.push({
      accountId,
      kind,
      episodeSeq,
      detail,
      actor: options.actor,
      idempotencyKey: key,
    });
  };
  const outbox = (
    key: string,
    kind: OutboxKind,
    payload: Record<string, unknown>,
    availableAt?: Date,
  ) => {
    effects.push({
      idempotencyKey: key,
      kind,
      accountId,
      payload,
      ...(availableAt ? { availableAt } : {}),
    });
  };

  /**
   * Params carry the notice's episode (and a release warning's instance): the sender re-checks
   * at send time that the notice is still true (src/domain/notice-check.ts).
   */
  const notify = async (
    key: string,
    notice: Notice,
    episodeSeq: number | null,
    instanceId?: string,
  ) => {
    if (notice.channels.length === 0) {
      event('notice-unreachable', `${key}-unreachable`, episodeSeq, {
        template: notice.template,
      });
      return;
    }
    contacts ??= await loadContacts(tx, accountId);
    for (const channel of notice.channels) {
      const recipient = channel === 'email' ? contacts.email : contacts.phone;
      if (recipient === null) continue;
      const notBefore =
        channel === 'sms'
          ? nextSmsSendInstant(now, snapshot.timeZone, options.rules.quietHours)
          : now;
      messages.push({
        dedupeKey: `${key}-${channel}`,
        accountId,
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
  };

  for (const d of decisions) {
    switch (d.kind) {
      case 'invalid-snapshot':
        event('invalid-snapshot', d.key, null, { reason: d.reason });
        break;
      case 'open-episode':
        patchAccount({ episodeSeq: d.episodeSeq, episodeStartedAt: d.startedAt });
        event('episode-opened', d.key, d.episodeSeq, { startedAt: d.startedAt.toISOString() });
        break;
      case 'close-episode':
        patchAccount({ episodeStartedAt: null, lastEpisodeEndedAt: d.endedAt });
        event('episode-closed', d.key, d.episodeSeq, { endedAt: d.endedAt.toISOString() });
        break;
      case 'set-state':
        patchAccount({ enforcementState: d.to });
        event('state-changed', d.key, null, { from: d.from, to: d.to });
        break;
      case 'suspend-services':
      case 'suspend-studio':
        if (d.services.length > 0) {
          await tx
            .update(services)
            .set({
              overdueHold: true,
              overdueEpisodeSeq: d.episodeSeq,
              status: 'suspended',
              suspendedAt: sql`case when ${services.status} = 'active' then ${now.toISOString()}::timestamptz else ${services.suspendedAt} end`,
            })
            .where(
              and(
                inArray(
                  services.id,
                  d.services.map((a) => a.serviceId),
                ),
                eq(services.accountId, accountId),
                ne(services.status, 'released'),
              ),
            );
        }
        for (const action of d.services) {
          event('service-suspended', action.key, d.episodeSeq, {
            serviceId: action.serviceId,
            callControlPlane: action.callControlPlane,
            ...(d.kind === 'suspend-services' ? { cause: d.cause } : { studio: true }),
          });
          if (action.callControlPlane) {
            outbox(action.key, 'control-plane', {
              op: 'suspend',
              serviceId: action.serviceId,
              episodeSeq: d.episodeSeq,
            } satisfies ControlPayload);
          }
        }
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      case 'resume-services':
        if (d.services.length > 0) {
          await tx
            .update(services)
            .set({
              overdueHold: false,
              overdueEpisodeSeq: null,
              status: sql`case when ${services.operatorHold} then 'suspended' else 'active' end`,
              resumedAt: sql`case when ${services.operatorHold} then ${services.resumedAt} else ${now.toISOString()}::timestamptz end`,
            })
            .where(
              and(
                inArray(
                  services.id,
                  d.services.map((a) => a.serviceId),
                ),
                eq(services.accountId, accountId),
                ne(services.status, 'released'),
              ),
            );
        }
        for (const action of d.services) {
          event('service-resumed', action.key, d.episodeSeq, {
            serviceId: action.serviceId,
            callControlPlane: action.callControlPlane,
          });
          if (action.callControlPlane) {
            outbox(action.key, 'control-plane', {
              op: 'resume',
              serviceId: action.serviceId,
              episodeSeq: d.episodeSeq,
            } satisfies ControlPayload);
          }
        }
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      case 'clear-released-holds':
        await tx
          .update(services)
          .set({ overdueHold: false, overdueEpisodeSeq: null })
          .where(
            and(
              inArray(services.id, [...d.serviceIds]),
              eq(services.accountId, accountId),
              eq(services.status, 'released'),
            ),
          );
        event('released-holds-cleared', d.key, d.episodeSeq, { serviceIds: d.serviceIds });
        break;
      case 'schedule-release':
        await tx
          .update(studioInstances)
          .set({ releaseDueAt: d.dueAt, releaseEpisodeSeq: d.episodeSeq })
          .where(
            and(
              eq(studioInstances.id, d.instanceId),
              eq(studioInstances.accountId, accountId),
              isNull(studioInstances.releaseDueAt),
              isNull(studioInstances.releasedAt),
            ),
          );
        event('release-scheduled', d.key, d.episodeSeq, {
          instanceId: d.instanceId,
          dueAt: d.dueAt.toISOString(),
        });
        // The timer is a delayed evaluation at the due instant; the evaluation decides the release.
        outbox(d.key, 'wake', { at: d.dueAt.getTime() }, d.dueAt);
        break;
      case 'cancel-release':
        await tx
          .update(studioInstances)
          .set({ releaseDueAt: null, releaseEpisodeSeq: null })
          .where(
            and(
              eq(studioInstances.id, d.instanceId),
              eq(studioInstances.accountId, accountId),
              isNull(studioInstances.releasedAt),
            ),
          );
        event('release-cancelled', d.key, d.episodeSeq, { instanceId: d.instanceId });
        outbox(d.key, 'cancel-timer', { jobKey: d.releaseKey });
        break;
      case 'release-studio': {
        const released = await tx
          .update(studioInstances)
          .set({ releasedAt: now })
          .where(
            and(
              eq(studioInstances.id, d.instanceId),
              eq(studioInstances.accountId, accountId),
              isNull(studioInstances.releasedAt),
            ),
          )
          .returning({ id: studioInstances.id });
        if (released.length > 0) {
          // The studio service is released once none of its instances is left.
          await tx.execute(sql`
            update services set status = 'released', released_at = ${now.toISOString()}::timestamptz
             where id = ${d.serviceId} and account_id = ${accountId} and status <> 'released'
               and not exists (select 1 from studio_instances i
                                where i.service_id = ${d.serviceId} and i.released_at is null)`);
        }
        event('studio-released', d.key, d.episodeSeq, { instanceId: d.instanceId });
        outbox(d.key, 'control-plane', {
          op: 'release',
          serviceId: d.serviceId,
          instanceId: d.instanceId,
          episodeSeq: d.episodeSeq,
        } satisfies ControlPayload);
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      }
      case 'release-warning':
        await notify(d.key, d.notice, d.episodeSeq, d.instanceId);
        break;
      case 'low-balance-reminder':
        patchAccount({ lowBalanceQuietUntil: d.until });
        await notify(d.key, d.notice, null);
        break;
      case 'plan-quota-alert':
      case 'plan-expiry-reminder':
      case 'payg-revert-notice':
        await notify(d.key, d.notice, null);
        break;
      case 'overdue-reminder':
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      case 'wake':
        outbox(d.key, 'wake', { at: d.at.getTime() }, d.at);
        break;
    }
  }

  // Always written: the periodic scan skips accounts evaluated recently (SCAN_RECHECK_INTERVAL).
  const patch: AccountPatch = { ...(accountPatch ?? {}), evaluatedAt: now };
  await tx
    .update(accounts)
    .set({
      ...patch,
      // Episode and state changes are versioned; the reminder's quiet-until alone is not.
      ...(Object.keys(patch).some((k) => k !== 'lowBalanceQuietUntil' && k !== 'evaluatedAt')
        ? { version: sql`${accounts.version} + 1` }
        : {}),
    })
    .where(eq(accounts.id, accountId));
  const newMessages = await insertNotifications(tx, messages);
  for (const m of messages) {
    if (newMessages.has(m.dedupeKey)) {
      outbox(m.dedupeKey, 'notify', { channel: m.channel }, m.notBefore);
    }
  }
  const newEffects = await insertOutboxRows(tx, effects);
  await appendEvents(tx, events);
  return { newEffects: newEffects.size };
}

async function loadContacts(
  tx: Tx,
  accountId: string,
): Promise<{ email: string | null; phone: string | null }> {
  const [row] = await tx
    .select({ email: accounts.email, phone: accounts.phone })
    .from(accounts)
    .where(eq(accounts.id, accountId));
  return { email: row?.email ?? null, phone: row?.phone ?? null };
}
