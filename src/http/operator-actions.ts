import { sql } from 'drizzle-orm';
import { queryRows } from '../adapters/db/client';
import { appendEvent, insertOutbox } from '../adapters/db/daemon-writers';
import { markDaemonTransaction } from '../adapters/db/evaluation';
import { reopenFailedNotification } from '../adapters/db/notification-store';
import { loadOutbox, reopenOutbox } from '../adapters/db/outbox-store';
import type { Daemon } from '../daemon';
import { HttpError, notFound } from './api';

/**
 * Operator actions on one service or studio instance, shared by the /v1 API and the console's
 * forms: an operator hold placed or lifted, a studio released now. Each names the account the
 * caller expects the row to be of (`confirmAccountId`, typed again): a mismatch is refused.
 */

export interface ConfirmedAction {
  readonly confirmAccountId: string;
  readonly reason?: string | undefined;
}

interface ServiceRow {
  id: string;
  account_id: string;
  status: 'active' | 'suspended' | 'released';
  overdue_hold: boolean;
  operator_hold: boolean;
}

export interface HoldResult {
  readonly serviceId: string;
  readonly operatorHold: boolean;
  readonly changed: boolean;
  readonly accountId: string;
  readonly status: string;
  readonly effectKey: string | null;
}

/** An operator action names the account it expects the row to be of: a mismatch is 400. */
export function confirmAccount(what: string, accountId: string, confirmAccountId: string): void {
  if (accountId === confirmAccountId) return;
  const message = `must repeat the ${what}'s account id`;
  throw new HttpError(400, 'bad-request', `confirmAccountId ${message}`, {
    issues: [{ path: 'body.confirmAccountId', message }],
  });
}

/**
 * Operator hold (R7: never lifted by payment) placed (`on`) or lifted. The service row changes
 * and the control-plane effect is queued in one transaction; the effect is carried out like
 * every other (claimed under a lease, called with no transaction open, behind any older effect
 * on the service). The timeline shows `effect-applied` with `effectKey` when done.
 */
export async function setOperatorHold(
  daemon: Daemon,
  serviceId: string,
  on: boolean,
  body: ConfirmedAction,
  actor: string,
): Promise<HoldResult> {
  const result = await daemon.ctx.db.transaction(async (tx) => {
    await markDaemonTransaction(tx);
    const [svc] = await queryRows<ServiceRow>(
      tx,
      sql`select id, account_id, status, overdue_hold, operator_hold
            from services where id = ${serviceId} for update`,
    );
    if (svc === undefined) throw notFound('service', serviceId);
    confirmAccount('service', svc.account_id, body.confirmAccountId);
    if (svc.status === 'released') {
      throw new HttpError(409, 'released', `service ${serviceId} was released`);
    }
    if (svc.operator_hold === on) {
      return { changed: false, accountId: svc.account_id, status: svc.status, effectKey: null };
    }
    const suspended = on || svc.overdue_hold;
    await tx.execute(sql`
      update services
         set operator_hold = ${on},
             status = ${suspended ? 'suspended' : 'active'},
             suspended_at = case when ${suspended} and status <> 'suspended' then now() else suspended_at end,
             resumed_at = case when not ${suspended} then now() else resumed_at end,
             updated_at = now()
       where id = ${serviceId}`);
    const eventId = await appendEvent(tx, {
      accountId: svc.account_id,
      kind: on ? 'operator-hold' : 'operator-hold-released',
      actor,
      detail: { serviceId, ...(body.reason ? { reason: body.reason } : {}) },
    });
    // Only a change of the service's state reaches the control plane: releasing an operator
    // hold while overdue still holds the service changes nothing there.
    const op = on ? (svc.overdue_hold ? null : 'suspend') : suspended ? null : 'resume';
    let effectKey: string | null = null;
    if (op !== null) {
      effectKey = `operator-${op}-v1-${serviceId}-${eventId ?? 0}`;
      await insertOutbox(tx, {
        idempotencyKey: effectKey,
        kind: 'control-plane',
        accountId: svc.account_id,
        payload: {
          op,
          serviceId,
          actor,
          reason: on ? 'operator-hold' : 'operator-hold-released',
        },
      });
    }
    return {
      changed: true,
      accountId: svc.account_id,
      status: suspended ? 'suspended' : 'active',
      effectKey,
    };
  });
  if (result.effectKey !== null) daemon.ctx.relay.request();
  await daemon.evaluateSoon(result.accountId, actor);
  return { serviceId, operatorHold: on, ...result };
}

/**
 * Brings a scheduled R9 release forward to now and evaluates the account, so the release goes
 * through the normal effect path. Only an instance with a pending overdue release qualifies.
 */
export async function releaseStudioNow(
  daemon: Daemon,
  instanceId: string,
  body: ConfirmedAction,
  actor: string,
): Promise<{ instanceId: string; accountId: string; releaseDue: 'now' }> {
  const accountId = await daemon.ctx.db.transaction(async (tx) => {
    await markDaemonTransaction(tx);
    const [inst] = await queryRows<{
      account_id: string;
      release_due_at: Date | string | null;
      released_at: Date | string | null;
    }>(
      tx,
      sql`select account_id, release_due_at, released_at from studio_instances
           where id = ${instanceId} for update`,
    );
    if (inst === undefined) throw notFound('studio instance', instanceId);
    confirmAccount('instance', inst.account_id, body.confirmAccountId);
    if (inst.released_at !== null) {
      throw new HttpError(409, 'released', `studio instance ${instanceId} is already released`);
    }
    if (inst.release_due_at === null) {
      throw new HttpError(
        409,
        'no-release-pending',
        'no release is pending: a studio is released only after its overdue suspension',
      );
    }
    await tx.execute(sql`
      update studio_instances set release_due_at = least(release_due_at, now()), updated_at = now()
       where id = ${instanceId}`);
    await appendEvent(tx, {
      accountId: inst.account_id,
      kind: 'operator-release-now',
      actor,
      detail: {
        instanceId,
        scheduledFor: new Date(inst.release_due_at).toISOString(),
        ...(body.reason ? { reason: body.reason } : {}),
      },
    });
    return inst.account_id;
  });
  await daemon.evaluateSoon(accountId, actor);
  return { instanceId, accountId, releaseDue: 'now' };
}

export interface RetryResult {
  readonly key: string;
  readonly what: 'effect' | 'message';
  readonly accountId: string;
  /** The status the row had (failed, or undeliverable for a message); it is pending now. */
  readonly previousStatus: string;
}

/**
 * An operator's retry of a failed control-plane effect or a failed (or undeliverable) message,
 * by its key: the row goes back to pending in one transaction with an `operator-retry` event,
 * and the relay dispatches it as it does any new row. Nothing is re-sent blind: the effect's
 * claim re-reads the service (a suspension the account has since paid off becomes a no-op),
 * and a message is re-checked like a first attempt (superseded when no longer true). A message
 * is refused while its contact is marked unreachable or its fallback reached the customer
 * (src/adapters/db/notification-store.ts). 404 for an unknown key, 409 for a row that did not
 * fail or cannot be retried, 400 when `confirmAccountId` is not the row's account.
 */
export async function retryFailed(
  daemon: Daemon,
  key: string,
  body: ConfirmedAction,
  actor: string,
): Promise<RetryResult> {
  const result = await daemon.ctx.db.transaction(async (tx) => {
    await markDaemonTransaction(tx);
    const event = (accountId: string, detail: Record<string, unknown>) =>
      appendEvent(tx, {
        accountId,
        kind: 'operator-retry',
        actor,
        detail: { key, ...detail, ...(body.reason ? { reason: body.reason } : {}) },
      });
    const message = await reopenFailedNotification(tx, key);
    if (message !== null) {
      confirmAccount('message', message.accountId, body.confirmAccountId);
      if (message.kind === 'refused') throw new HttpError(409, message.code, message.reason);
      await event(message.accountId, {
        what: 'message',
        channel: message.channel,
        previousStatus: message.previousStatus,
        previousError: message.previousError,
      });
      const r: RetryResult = {
        key,
        what: 'message',
        accountId: message.accountId,
        previousStatus: message.previousStatus,
      };
      return r;
    }
    const entry = await loadOutbox(tx, key);
    if (entry === null) throw notFound('effect or message', key);
    confirmAccount('effect', entry.accountId, body.confirmAccountId);
    if (entry.kind !== 'control-plane') {
      throw new HttpError(
        409,
        'not-retryable',
        `${key} is a ${entry.kind} row: only control-plane effects and messages are retried`,
      );
    }
    // The reason it failed, read under the row's lock before the reopen clears it.
    const [held] = await queryRows<{ status: string; last_error: string | null }>(
      tx,
      sql`select status, last_error from outbox where id = ${entry.id} for update`,
    );
    if (held?.status !== 'failed' || !(await reopenOutbox(tx, key, 'failed'))) {
      throw new HttpError(
        409,
        'not-failed',
        `effect ${key} is ${held?.status ?? 'gone'}, not failed`,
      );
    }
    await event(entry.accountId, {
      what: 'effect',
      previousStatus: 'failed',
      previousError: held.last_error,
    });
    const r: RetryResult = {
      key,
      what: 'effect',
      accountId: entry.accountId,
      previousStatus: 'failed',
    };
    return r;
  });
  daemon.ctx.relay.request();
  return result;
}
