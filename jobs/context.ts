import { UnrecoverableError, type Job } from 'bullmq';
import type { Clock } from '../src/adapters/clock/clock';
import type { ControlPlane } from '../src/adapters/control-plane/control-plane';
import type { Db } from '../src/adapters/db/client';
import type { Settlement } from '../src/adapters/db/outbox-store';
import type { OutboxRelay } from '../src/adapters/queue/outbox-relay';
import type { QueueSet } from '../src/adapters/queue/queues';
import type { Config } from '../src/config';
import { dbErrorInfo, describeError, safeStack } from '../src/describe-error';
import type { Logger } from '../src/logger';

/** What every job handler may use. Built once by the daemon (src/daemon.ts). */
export interface JobContext {
  readonly db: Db;
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly queues: QueueSet;
  readonly relay: OutboxRelay;
  readonly controlPlane: ControlPlane;
  /**
   * Called when an evaluation held a decision by the mass-suspension breaker: the daemon alerts
   * the operators of a new trip at once (once per trip across daemons) instead of at its next
   * monitor check.
   */
  readonly breakerHeld?: () => void;
}

/**
 * A job handler: parse the payload, load, decide, apply. `log` is a child logger already bound
 * to the job id (handlers add account id and idempotency key).
 */
export type JobHandler = (job: Job, ctx: JobContext, log: Logger) => Promise<unknown>;

/**
 * What a handler of an outbox row's job asks the registry to record (the registry is the only
 * caller of the outbox store's settle for jobs): settle the row (then, with `fail`, fail the job
 * for good), note a retryable attempt (then BullMQ retries), or wait and come back later.
 */
export type OutboxOutcome =
  | {
      readonly kind: 'settle';
      readonly key: string;
      readonly settlement: Settlement;
      readonly fail?: string;
    }
  | {
      readonly kind: 'retry';
      readonly key: string;
      readonly error: string;
      readonly claimToken?: string;
    }
  | { readonly kind: 'wait'; readonly untilMs: number; readonly why: string };

/** A handler's return value carrying an outcome for the registry; `value` is the job's result. */
export interface JobOutcome {
  readonly outbox: OutboxOutcome;
  readonly value: unknown;
}

export function isJobOutcome(x: unknown): x is JobOutcome {
  return typeof x === 'object' && x !== null && 'outbox' in x && 'value' in x;
}

/** Who an evaluation is attributed to in the event log: an operator by name, else the daemon. */
export function actorOf(origin: string): string {
  return origin.startsWith('operator') ? origin : 'daemon';
}

/** BullMQ's own signals (move to delayed, wait for children, rate limited): not failures. */
const BULLMQ_SIGNALS = new Set([
  'DelayedError',
  'WaitingError',
  'WaitingChildrenError',
  'RateLimitError',
]);

/**
 * What a handler throws to BullMQ. BullMQ keeps the message as the job's `failedReason` and the
 * stack in its `stacktrace`, and the dashboard shows both to every viewer, so they are the
 * error's description without personal data (src/describe-error.ts: a failed query's SQL and
 * parameters never). Whether a retry helps is kept: an UnrecoverableError stays one.
 */
export function toJobError(error: unknown): Error {
  if (error instanceof Error && BULLMQ_SIGNALS.has(error.name)) return error;
  const message = describeError(error);
  const unrecoverable = error instanceof Error && error.name === 'UnrecoverableError';
  const safe = unrecoverable ? new UnrecoverableError(message) : new Error(message);
  if (error instanceof Error) safe.stack = safeStack(error, `${safe.name}: ${message}`);
  // The database error's names stay readable to the log's serializer (BullMQ keeps only the
  // message and the stack).
  const db = dbErrorInfo(error);
  if (db !== null) {
    Object.assign(safe, {
      code: db.code,
      constraint_name: db.constraint,
      table_name: db.table,
      column_name: db.column,
    });
  }
  return safe;
}
