import { randomUUID } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import {
  claimEffectBatched,
  controlPayloadSchema,
  type FinalStatus,
  releaseLease,
} from '../src/adapters/db/outbox-store';
import { parsePayload } from '../src/adapters/queue/catalog';
import { effectSuperseded, type EffectOp } from '../src/domain/effect-wanted';
import type { JobHandler, JobOutcome } from './context';
import { metrics } from '../src/observability/metrics';

const REASONS: Record<EffectOp, string> = {
  suspend: 'overdue',
  resume: 'overdue-resolved',
  release: 'overdue-studio-release',
};

/**
 * Margin of an effect's lease beyond CONTROL_PLANE_TIMEOUT, ms: covers the claim and the record
 * on a loaded host. A holder still working after that is fenced off and records nothing.
 */
export const EFFECT_LEASE_MARGIN_MS = 15_000;
/** How long an effect waits behind an older effect on its service (or a live lease), ms. */
const WAIT_MS = 1_000;
/** How long an effect held by the mode (shadow, off) or a pause waits before it asks again, ms. */
const MODE_WAIT_MS = 5_000;

/**
 * Carries one suspend / resume / release to the control plane, exactly once per key:
 * claim under a lease (one statement, coalesced with the claims of the other effect jobs running
 * at the same moment; it returns the row, re-checks that no older effect on the service is
 * unfinished and reads the service's state), re-check that the effect is still wanted, call with
 * no transaction open, and return the outcome; the registry records it under the claim token
 * (jobs/registry.ts), again in a coalesced statement.
 */
export const controlPlaneJob: JobHandler = async (job, ctx, log) => {
  const { outboxKey } = parsePayload('control-plane', job.data);
  const claimToken = randomUUID();
  const leaseMs = ctx.config.controlPlaneTimeoutMs + EFFECT_LEASE_MARGIN_MS;
  const claim = await claimEffectBatched(ctx.db, { key: outboxKey, claimToken, leaseMs });
  if (claim.kind === 'missing') throw new UnrecoverableError(`no outbox row ${outboxKey}`);
  const entry = claim.entry;
  // Bound per call, not as a child logger: a child costs its redaction set-up on every job,
  // while calls below the log level cost nothing.
  const ids = { accountId: entry.accountId, idempotencyKey: outboxKey };
  if (claim.kind === 'finished') {
    log.debug({ ...ids, status: claim.status }, 'effect already finished');
    return { status: claim.status };
  }
  if (claim.kind === 'busy') {
    log.debug(
      { ...ids, reason: claim.reason },
      'effect waits (older effect on the service, or held)',
    );
    return {
      outbox: {
        kind: 'wait',
        untilMs:
          Date.now() +
          (claim.reason === 'mode' || claim.reason === 'paused' ? MODE_WAIT_MS : WAIT_MS),
        why: claim.reason,
      },
      value: null,
    } satisfies JobOutcome;
  }
  const parsed = controlPayloadSchema.safeParse(entry.payload);
  if (!parsed.success) {
    const reason = `bad payload: ${parsed.error.message}`;
    return {
      outbox: {
        kind: 'settle',
        key: outboxKey,
        settlement: { status: 'failed', reason, claimToken },
        fail: reason,
      },
      value: null,
    } satisfies JobOutcome;
  }
  const p = parsed.data;
  const eventBase = {
    accountId: entry.accountId,
    episodeSeq: p.episodeSeq ?? null,
    ...(p.actor !== undefined ? { actor: p.actor } : {}),
  };
  /**
   * Settles the row under the claim and records its event `effect-<event>` once (key
   * `<outboxKey>-<event>`); with `fail`, the job then fails for good.
   */
  const settled = (
    status: FinalStatus,
    event: 'superseded' | 'applied' | 'failed',
    reason: string | null,
    detail: Record<string, unknown>,
    value: unknown,
    fail?: string,
  ): JobOutcome => ({
    outbox: {
      kind: 'settle',
      key: outboxKey,
      settlement: {
        status,
        reason,
        claimToken,
        event: {
          ...eventBase,
          kind: `effect-${event}`,
          detail: { op: p.op, serviceId: p.serviceId, key: outboxKey, ...detail },
          idempotencyKey: `${outboxKey}-${event}`,
        },
      },
      ...(fail !== undefined ? { fail } : {}),
    },
    value,
  });

  const skip = effectSuperseded(p.op, claim.target);
  if (skip !== null) {
    metrics.effect(p.op, 'superseded');
    log.info({ ...ids, op: p.op, reason: skip }, 'control-plane effect superseded');
    const value = { status: 'superseded', reason: skip };
    return settled('superseded', 'superseded', skip, { reason: skip }, value);
  }

  // No transaction is open here: the call is bounded by CONTROL_PLANE_TIMEOUT, and the lease
  // (longer) keeps other holders off meanwhile.
  let outcome;
  try {
    outcome = await ctx.controlPlane.apply({
      op: p.op,
      accountId: entry.accountId,
      serviceId: p.serviceId,
      ...(p.instanceId !== undefined ? { instanceId: p.instanceId } : {}),
      idempotencyKey: outboxKey,
      reason: p.reason ?? REASONS[p.op],
    });
  } catch (error) {
    await releaseLease(ctx.db, outboxKey, claimToken).catch(() => undefined);
    throw error;
  }
  if (outcome.ok) {
    metrics.effect(p.op, 'applied');
    log.info({ ...ids, op: p.op, serviceId: p.serviceId }, 'control-plane effect applied');
    return settled('done', 'applied', null, { mode: ctx.controlPlane.mode }, { status: 'applied' });
  }
  if (outcome.permanent) {
    metrics.effect(p.op, 'failed');
    log.error({ ...ids, op: p.op, error: outcome.error }, 'control plane refused the effect');
    return settled(
      'failed',
      'failed',
      outcome.error,
      { error: outcome.error },
      null,
      outcome.error,
    );
  }
  metrics.effect(p.op, 'retry');
  log.warn(
    { ...ids, op: p.op, error: outcome.error, attempt: job.attemptsMade + 1 },
    'control plane unavailable; will retry',
  );
  return {
    outbox: { kind: 'retry', key: outboxKey, error: outcome.error, claimToken },
    value: null,
  } satisfies JobOutcome;
};
