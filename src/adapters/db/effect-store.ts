import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { queryRows, type Db, type Tx } from './client';

/** Reads and outcomes of effect jobs: the database is the authority on what was done. */

export interface OutboxEntry {
  readonly id: number;
  readonly key: string;
  readonly kind: string;
  readonly accountId: string;
  readonly payload: unknown;
  readonly status: 'pending' | 'dispatched' | 'done' | 'failed';
  readonly attempts: number;
}

export async function loadOutbox(db: Db | Tx, key: string): Promise<OutboxEntry | null> {
  const rows = await queryRows<{
    id: number | string;
    idempotency_key: string;
    kind: string;
    account_id: string;
    payload: unknown;
    status: OutboxEntry['status'];
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

export const controlPayloadSchema = z.object({
  op: z.enum(['suspend', 'resume', 'release']),
  serviceId: z.string().min(1),
  instanceId: z.string().min(1).optional(),
  episodeSeq: z.number().int().positive(),
});

export interface EffectTarget {
  readonly service: {
    readonly status: 'active' | 'suspended' | 'released';
    readonly overdueHold: boolean;
    readonly operatorHold: boolean;
  } | null;
  readonly instanceReleased: boolean | null;
}

/**
 * Locks the service row an effect touches (and reads its instance) for the rest of the
 * transaction: effects on one service run one at a time, so a resume can never overtake the
 * suspend it undoes at the control plane.
 */
export async function lockEffectTarget(
  tx: Tx,
  accountId: string,
  serviceId: string,
  instanceId: string | undefined,
): Promise<EffectTarget> {
  const services = await queryRows<{
    status: 'active' | 'suspended' | 'released';
    overdue_hold: boolean;
    operator_hold: boolean;
  }>(
    tx,
    sql`
    select status, overdue_hold, operator_hold from services
     where id = ${serviceId} and account_id = ${accountId}
     for update`,
  );
  const svc = services[0];
  let instanceReleased: boolean | null = null;
  if (instanceId !== undefined) {
    const instances = await queryRows<{
      released_at: Date | null;
    }>(
      tx,
      sql`
      select released_at from studio_instances
       where id = ${instanceId} and account_id = ${accountId}`,
    );
    instanceReleased = instances[0] === undefined ? null : instances[0].released_at !== null;
  }
  return {
    service: svc
      ? { status: svc.status, overdueHold: svc.overdue_hold, operatorHold: svc.operator_hold }
      : null,
    instanceReleased,
  };
}

export async function finishOutbox(
  tx: Db | Tx,
  key: string,
  status: 'done' | 'failed',
  note: string | null,
): Promise<void> {
  await tx.execute(sql`
    update outbox set status = ${status}, last_error = ${note}, updated_at = now()
     where idempotency_key = ${key}`);
}

export async function noteOutboxAttempt(tx: Db | Tx, key: string, error: string): Promise<void> {
  await tx.execute(sql`
    update outbox set attempts = attempts + 1, last_error = ${error}, updated_at = now()
     where idempotency_key = ${key}`);
}
