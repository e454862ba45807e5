import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  InvalidPayloadError,
  isJobName,
  QUEUES,
  type JobName,
} from '../src/adapters/queue/catalog';
import {
  noteOutboxAttempt,
  settleOutbox,
  settleOutboxBatched,
} from '../src/adapters/db/outbox-store';
import {
  notifyBackoffStrategy,
  notifyQueueNameFor,
  notifyWorkerLimiter,
} from '../src/adapters/queue/notify-wiring';
import { describeError } from '../src/describe-error';
import { balanceScanJob } from './balance-scan';
import {
  isJobOutcome,
  toJobError,
  type JobContext,
  type JobHandler,
  type JobOutcome,
} from './context';
import { controlPlaneJob } from './control-plane';
import { evaluateAccountJob } from './evaluate-account';
import { evaluateBatchJob } from './evaluate-batch';
import { outboxRelayJob } from './outbox-relay';
import { planScanJob } from './plan-scan';
import { pruneJob } from './prune';
import { lazyChildLogger } from '../src/logger';
import { metrics } from '../src/observability/metrics';

/**
 * Every job of the scan, evaluate and effects queues, by catalog name. Notifications have their
 * own workers (one per channel queue, with rate limits), see src/daemon.ts.
 */
export const HANDLERS: Partial<Record<JobName, JobHandler>> = {
  'balance-scan': balanceScanJob,
  'plan-scan': planScanJob,
  prune: pruneJob,
  'outbox-relay': outboxRelayJob,
  'evaluate-account': evaluateAccountJob,
  'evaluate-batch': evaluateBatchJob,
  'control-plane': controlPlaneJob,
};

/** Job lock (renewed every half) and stall check, ms: see BullMQ's stalled-jobs guide. */
export const STALL_LOCK_MS = 15_000;
export const STALL_CHECK_MS = 5_000;
/**
 * Times a job may be found stalled (its worker died: SIGKILL, OOM, a lost host) before BullMQ
 * fails it for good. BullMQ's default of 1 turns a job caught by two crashes in a row into a
 * failed job: an effect marked failed, a message never sent. A stall is not the job's fault and
 * every handler is idempotent on its key, so allow several; still bounded, so a job that itself
 * crashes the process does not loop forever.
 */
export const MAX_STALLED_COUNT = 10;

/** The queues worked through HANDLERS. */
export const CORE_QUEUES = [QUEUES.scan, QUEUES.evaluate, QUEUES.effects] as const;
type CoreQueue = (typeof CORE_QUEUES)[number];

export interface WorkerSettings {
  readonly concurrency: Readonly<Record<CoreQueue, number>>;
  /** A worker's 'error' event (mostly Redis connection errors); default: logged. */
  readonly onError?: (err: Error, queue: string) => void;
}

/**
 * One BullMQ worker per queue, dispatching on the job name. A payload that does not parse is a
 * permanent failure (retrying cannot fix it). A handler of an outbox row's job returns its outcome
 * and this records it (recordOutcome); a job of an outbox row (an effect, a timer) that fails for
 * good settles its row failed with the reason, so operators see it and reconcile leaves it.
 */
export function startWorkers(
  ctx: JobContext,
  connection: Redis,
  settings: WorkerSettings,
): Worker[] {
  const process = async (job: Job, token?: string): Promise<unknown> => {
    const handler = isJobName(job.name) ? HANDLERS[job.name] : undefined;
    if (handler === undefined) throw new UnrecoverableError(`unknown job name ${job.name}`);
    const log = lazyChildLogger(ctx.logger, { job: job.name, jobId: job.id });
    try {
      const result = await handler(job, ctx, log);
      return isJobOutcome(result) ? await recordOutcome(ctx, job, token, result) : result;
    } catch (error) {
      // Thrown errors become the job's failedReason: described, never a query's parameters.
      if (error instanceof InvalidPayloadError) {
        throw toJobError(new UnrecoverableError(error.message));
      }
      throw toJobError(error);
    }
  };
  return CORE_QUEUES.map((queue) => {
    const worker = new Worker(queue, process, {
      connection,
      prefix: ctx.config.queuePrefix,
      concurrency: settings.concurrency[queue],
      // A killed worker's jobs are found stalled and retried within ~20 s, not BullMQ's ~60 s.
      lockDuration: STALL_LOCK_MS,
      stalledInterval: STALL_CHECK_MS,
      maxStalledCount: MAX_STALLED_COUNT,
    });
    worker.on('error', (err) =>
      settings.onError
        ? settings.onError(err, queue)
        : ctx.logger.error({ err, queue }, 'worker error'),
    );
    worker.on('completed', () => metrics.jobFinished(queue, 'completed'));
    worker.on('failed', (job, err) => {
      if (!job) return;
      const final = noteFailure(ctx, queue, job, err);
      const outboxKey = (job.data as { outboxKey?: unknown }).outboxKey;
      if (final && typeof outboxKey === 'string') {
        void settleOutbox(ctx.db, outboxKey, {
          status: 'failed',
          reason: `job failed: ${describeError(err)}`,
        }).catch((e: unknown) =>
          // Reconcile settles it later (the job stays failed in Redis).
          ctx.logger.warn({ err: e, outboxKey }, 'could not settle the outbox row of a failed job'),
        );
      }
    });
    return worker;
  });
}

/**
 * The notification workers: one per channel queue, each with its channel's rate limit (a BullMQ
 * limiter, held in Redis across daemons) and the jittered retry delays; the same stall settings
 * and finished-job metrics as every other worker. A message settles its own rows (its final
 * failure included); a job BullMQ fails for stalling is left to reconcile, which runs it again.
 */
export function startNotifyWorkers(
  ctx: JobContext,
  connection: Redis,
  send: (job: Job, token?: string) => Promise<void>,
  /** Connection errors (Redis away); default: logged. */
  onError?: (err: Error, queue: string) => void,
): Worker[] {
  return (['email', 'sms'] as const).map((channel) => {
    const queue = notifyQueueNameFor(channel);
    const limiter = notifyWorkerLimiter(ctx.config, channel);
    const worker = new Worker(queue, send, {
      connection,
      prefix: ctx.config.queuePrefix,
      concurrency: ctx.config.notify.concurrency,
      lockDuration: STALL_LOCK_MS,
      stalledInterval: STALL_CHECK_MS,
      maxStalledCount: MAX_STALLED_COUNT,
      ...(limiter ? { limiter } : {}),
      settings: { backoffStrategy: notifyBackoffStrategy },
    });
    worker.on('error', (err) =>
      onError ? onError(err, queue) : ctx.logger.error({ err, queue }, 'worker error'),
    );
    worker.on('completed', () => metrics.jobFinished(queue, 'completed'));
    // The sender logs the provider's outcomes; this line also covers what it does not see (a
    // failing statement, a stall), with the job's fate.
    worker.on('failed', (job, err) => {
      if (job) noteFailure(ctx, queue, job, err);
    });
    return worker;
  });
}

/**
 * Records what a handler returned for its outbox row: settles it (under the handler's claim
 * token, when it holds one), notes a retryable attempt and lets BullMQ retry, or moves the job
 * to delayed to come back later. Returns the job's result.
 */
async function recordOutcome(
  ctx: JobContext,
  job: Job,
  token: string | undefined,
  outcome: JobOutcome,
): Promise<unknown> {
  const o = outcome.outbox;
  switch (o.kind) {
    case 'settle': {
      // A claimed effect's outcome is coalesced with those of the effects finishing at the same
      // moment (one statement per batch); other rows (timers) settle alone.
      const recorded =
        o.settlement.claimToken === undefined
          ? await settleOutbox(ctx.db, o.key, o.settlement)
          : await settleOutboxBatched(ctx.db, o.key, o.settlement);
      if (!recorded) {
        ctx.logger.warn(
          { outboxKey: o.key, status: o.settlement.status },
          'outcome not recorded: the row was settled, or its lease taken over, meanwhile',
        );
      }
      if (o.fail !== undefined) throw new UnrecoverableError(o.fail);
      return outcome.value;
    }
    case 'retry':
      await noteOutboxAttempt(ctx.db, o.key, o.error, o.claimToken);
      throw new Error(o.error);
    case 'wait':
      if (token === undefined) throw new Error(`waiting: ${o.why}`);
      await job.moveToDelayed(o.untilMs, token);
      throw new DelayedError();
  }
}

/**
 * A failed attempt of any worker: counted in the metrics when it is the last, and logged with
 * the job's fate (the error is already described without personal data: toJobError). Returns
 * whether the job failed for good.
 */
function noteFailure(ctx: JobContext, queue: string, job: Job, err: Error): boolean {
  const final = isFinalFailure(job, err);
  if (final) metrics.jobFinished(queue, 'failed');
  ctx.logger.warn(
    { queue, job: job.name, jobId: job.id, attempt: job.attemptsMade, final, err },
    final ? 'job failed for good' : 'job failed; will retry',
  );
  return final;
}

/** True when a failed attempt was the job's last: no retry follows. */
export function isFinalFailure(job: Job, err: Error): boolean {
  return job.attemptsMade >= (job.opts.attempts ?? 1) || err instanceof UnrecoverableError;
}
