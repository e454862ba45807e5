import { and, eq, isNull, ne, sql } from 'drizzle-orm';
import type { Decision, Notice } from '../../domain/decisions';
import { nextSmsSendInstant } from '../../domain/quiet-hours';
import type { RuleSettings } from '../../domain/rules';
import type { AccountSnapshot } from '../../domain/snapshot';
import type { Tx } from './client';
import { appendEvent, insertNotification, insertOutbox } from './daemon-writers';
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
}

export interface ApplySummary {
  /** Outbox rows this evaluation created (effects not already known). */
  readonly newEffects: number;
}

export async function applyDecisions(
  tx: Tx,
  snapshot: AccountSnapshot,
  decisions: readonly Decision[],
  now: Date,
  options: ApplyOptions,
): Promise<ApplySummary> {
  const accountId = snapshot.accountId;
  let newEffects = 0;
  let contacts: { email: string | null; phone: string | null } | undefined;

  const event = (
    kind: string,
    key: string,
    episodeSeq: number | null,
    detail: Record<string, unknown>,
  ) =>
    appendEvent(tx, {
      accountId,
      kind,
      episodeSeq,
      detail,
      actor: options.actor,
      idempotencyKey: key,
    });

  const outbox = async (
    key: string,
    kind: OutboxKind,
    payload: Record<string, unknown>,
    availableAt?: Date,
  ) => {
    const inserted = await insertOutbox(tx, {
      idempotencyKey: key,
      kind,
      accountId,
      payload,
      ...(availableAt ? { availableAt } : {}),
    });
    if (inserted) newEffects += 1;
    return inserted;
  };

  const notify = async (key: string, notice: Notice, episodeSeq: number | null) => {
    if (notice.channels.length === 0) {
      await event('notice-unreachable', `${key}-unreachable`, episodeSeq, {
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
      const dedupeKey = `${key}-${channel}`;
      const inserted = await insertNotification(tx, {
        dedupeKey,
        accountId,
        channel,
        template: notice.template,
        locale: snapshot.locale,
        recipient,
        params: { ...notice.params },
        notBefore,
      });
      if (inserted) await outbox(dedupeKey, 'notify', { channel }, notBefore);
    }
  };

  for (const d of decisions) {
    switch (d.kind) {
      case 'invalid-snapshot':
        await event('invalid-snapshot', d.key, null, { reason: d.reason });
        break;
      case 'open-episode':
        await tx
          .update(accounts)
          .set({
            episodeSeq: d.episodeSeq,
            episodeStartedAt: d.startedAt,
            version: sql`${accounts.version} + 1`,
          })
          .where(eq(accounts.id, accountId));
        await event('episode-opened', d.key, d.episodeSeq, {
          startedAt: d.startedAt.toISOString(),
        });
        break;
      case 'close-episode':
        await tx
          .update(accounts)
          .set({
            episodeStartedAt: null,
            lastEpisodeEndedAt: d.endedAt,
            version: sql`${accounts.version} + 1`,
          })
          .where(eq(accounts.id, accountId));
        await event('episode-closed', d.key, d.episodeSeq, { endedAt: d.endedAt.toISOString() });
        break;
      case 'set-state':
        await tx
          .update(accounts)
          .set({ enforcementState: d.to, version: sql`${accounts.version} + 1` })
          .where(eq(accounts.id, accountId));
        await event('state-changed', d.key, null, { from: d.from, to: d.to });
        break;
      case 'suspend-services':
      case 'suspend-studio':
        for (const action of d.services) {
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
                eq(services.id, action.serviceId),
                eq(services.accountId, accountId),
                ne(services.status, 'released'),
              ),
            );
          await event('service-suspended', action.key, d.episodeSeq, {
            serviceId: action.serviceId,
            callControlPlane: action.callControlPlane,
            ...(d.kind === 'suspend-services' ? { cause: d.cause } : { studio: true }),
          });
          if (action.callControlPlane) {
            await outbox(action.key, 'control-plane', {
              op: 'suspend',
              serviceId: action.serviceId,
              episodeSeq: d.episodeSeq,
            } satisfies ControlPayload);
          }
        }
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      case 'resume-services':
        for (const action of d.services) {
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
                eq(services.id, action.serviceId),
                eq(services.accountId, accountId),
                ne(services.status, 'released'),
              ),
            );
          await event('service-resumed', action.key, d.episodeSeq, {
            serviceId: action.serviceId,
            callControlPlane: action.callControlPlane,
          });
          if (action.callControlPlane) {
            await outbox(action.key, 'control-plane', {
              op: 'resume',
              serviceId: action.serviceId,
              episodeSeq: d.episodeSeq,
            } satisfies ControlPayload);
          }
        }
        await notify(d.key, d.notice, d.episodeSeq);
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
        await event('release-scheduled', d.key, d.episodeSeq, {
          instanceId: d.instanceId,
          dueAt: d.dueAt.toISOString(),
        });
        // The timer is a delayed evaluation at the due instant; the evaluation decides the release.
        await outbox(d.key, 'wake', { at: d.dueAt.getTime() }, d.dueAt);
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
        await event('release-cancelled', d.key, d.episodeSeq, { instanceId: d.instanceId });
        await outbox(d.key, 'cancel-timer', { jobKey: d.releaseKey });
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
        await event('studio-released', d.key, d.episodeSeq, { instanceId: d.instanceId });
        await outbox(d.key, 'control-plane', {
          op: 'release',
          serviceId: d.serviceId,
          instanceId: d.instanceId,
          episodeSeq: d.episodeSeq,
        } satisfies ControlPayload);
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      }
      case 'release-warning':
        await notify(d.key, d.notice, d.episodeSeq);
        break;
      case 'low-balance-reminder':
        await tx
          .update(accounts)
          .set({ lowBalanceQuietUntil: d.until })
          .where(eq(accounts.id, accountId));
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
        await outbox(d.key, 'wake', { at: d.at.getTime() }, d.at);
        break;
    }
  }
  return { newEffects };
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
