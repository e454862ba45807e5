import { UnrecoverableError } from 'bullmq';
import { appendEvent } from '../src/adapters/db/daemon-writers';
import {
  controlPayloadSchema,
  finishOutbox,
  loadOutbox,
  lockEffectTarget,
  noteOutboxAttempt,
  type EffectTarget,
} from '../src/adapters/db/effect-store';
import { markDaemonTransaction } from '../src/adapters/db/evaluation';
import { parsePayload } from '../src/adapters/queue/catalog';
import type { JobHandler } from './context';
import { metrics } from '../src/observability/metrics';

type Op = 'suspend' | 'resume' | 'release';

/**
 * Why the effect is no longer wanted, or null to go ahead. Re-checked under the service's row
 * lock right before the call: a payment that landed after the suspension was decided turns the
 * suspend into a no-op instead of suspending a paid account.
 */
function superseded(op: Op, target: EffectTarget): string | null {
  const svc = target.service;
  if (svc === null) return 'service no longer exists';
  switch (op) {
    case 'suspend':
      if (svc.status === 'released') return 'service was released';
      return svc.overdueHold ? null : 'overdue hold already lifted (paid)';
    case 'resume':
      if (svc.status === 'released') return 'service was released';
      return svc.overdueHold ? 'overdue hold placed again' : null;
    case 'release':
      return target.instanceReleased === true ? null : 'instance not marked released';
  }
}

const REASONS: Record<Op, string> = {
  suspend: 'overdue',
  resume: 'overdue-resolved',
  release: 'overdue-studio-release',
};

/** Carries one suspend / resume / release to the control plane, exactly once per key. */
export const controlPlaneJob: JobHandler = async (job, ctx, log) => {
  const { outboxKey } = parsePayload('control-plane', job.data);
  const entry = await loadOutbox(ctx.db, outboxKey);
  if (entry === null) throw new UnrecoverableError(`no outbox row ${outboxKey}`);
  const jobLog = log.child({ accountId: entry.accountId, idempotencyKey: outboxKey });
  // 'failed' is tried again: only an operator retries a failed job, and means it.
  if (entry.status === 'done') {
    jobLog.debug('effect already finished');
    return { status: entry.status };
  }
  const parsed = controlPayloadSchema.safeParse(entry.payload);
  if (!parsed.success) {
    await finishOutbox(ctx.db, outboxKey, 'failed', `bad payload: ${parsed.error.message}`);
    throw new UnrecoverableError(`outbox ${outboxKey} has a bad payload`);
  }
  const p = parsed.data;

  const result = await ctx.db.transaction(async (tx) => {
    await markDaemonTransaction(tx);
    const target = await lockEffectTarget(tx, entry.accountId, p.serviceId, p.instanceId);
    const skip = superseded(p.op, target);
    if (skip !== null) {
      await finishOutbox(tx, outboxKey, 'done', `superseded: ${skip}`);
      await appendEvent(tx, {
        accountId: entry.accountId,
        kind: 'effect-superseded',
        episodeSeq: p.episodeSeq,
        detail: { op: p.op, serviceId: p.serviceId, reason: skip },
        idempotencyKey: `${outboxKey}-superseded`,
      });
      return { status: 'superseded' as const, reason: skip };
    }
    // The call happens with the row lock held, bounded by CONTROL_PLANE_TIMEOUT.
    const outcome = await ctx.controlPlane.apply({
      op: p.op,
      accountId: entry.accountId,
      serviceId: p.serviceId,
      ...(p.instanceId !== undefined ? { instanceId: p.instanceId } : {}),
      idempotencyKey: outboxKey,
      reason: REASONS[p.op],
    });
    if (outcome.ok) {
      await finishOutbox(tx, outboxKey, 'done', null);
      await appendEvent(tx, {
        accountId: entry.accountId,
        kind: 'effect-applied',
        episodeSeq: p.episodeSeq,
        detail: { op: p.op, serviceId: p.serviceId, mode: ctx.controlPlane.mode },
        idempotencyKey: `${outboxKey}-applied`,
      });
      return { status: 'applied' as const };
    }
    if (outcome.permanent) {
      await finishOutbox(tx, outboxKey, 'failed', outcome.error);
      await appendEvent(tx, {
        accountId: entry.accountId,
        kind: 'effect-failed',
        episodeSeq: p.episodeSeq,
        detail: { op: p.op, serviceId: p.serviceId, error: outcome.error },
        idempotencyKey: `${outboxKey}-failed`,
      });
      return { status: 'failed' as const, error: outcome.error };
    }
    await noteOutboxAttempt(tx, outboxKey, outcome.error);
    return { status: 'retry' as const, error: outcome.error };
  });

  metrics.effect(p.op, result.status);
  switch (result.status) {
    case 'applied':
      jobLog.info({ op: p.op, serviceId: p.serviceId }, 'control-plane effect applied');
      return result;
    case 'superseded':
      jobLog.info({ op: p.op, reason: result.reason }, 'control-plane effect superseded');
      return result;
    case 'failed':
      jobLog.error({ op: p.op, error: result.error }, 'control plane refused the effect');
      throw new UnrecoverableError(result.error);
    case 'retry':
      jobLog.warn(
        { op: p.op, error: result.error, attempt: job.attemptsMade + 1 },
        'control plane unavailable; will retry',
      );
      throw new Error(result.error);
  }
};
