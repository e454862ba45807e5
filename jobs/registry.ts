import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  InvalidPayloadError,
  isJobName,
  QUEUES,
  type JobName,
} from '../src/adapters/queue/catalog';
import { finishOutbox } from '../src/adapters/db/effect-store';
import { describeError } from '../src/describe-error';
import { balanceScanJob } from './balance-scan';
import { toJobError, type JobContext, type JobHandler } from './context';
import { controlPlaneJob } from './control-plane';
import { evaluateAccountJob } from './evaluate-account';
import { outboxRelayJob } from './outbox-relay';
import { planScanJob } from './plan-scan';
import { metrics } from '../src/observability/metrics';

/**
 * Every job of the scan, evaluate and effects queues, by catalog name. Notifications have their
 * own workers (one per channel queue, with rate limits), see src/daemon.ts.
 */
export const HANDLERS: Partial<Record<JobName, JobHandler>> = {
  'balance-scan': balanceScanJob,
  'plan-scan': planScanJob,
  'outbox-relay': outboxRelayJob,
  'evaluate-account': evaluateAccountJob,
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
 * permanent failure (retrying cannot fix it); an effect job that exhausts its attempts marks its
 * outbox row failed so operators see it.
 */
export function startWorkers(
  ctx: JobContext,
  connection: Redis,
  settings: WorkerSettings,
): Worker[] {
  const process = async (job: Job): Promise<unknown> => {
    const handler = isJobName(job.name) ? HANDLERS[job.name] : undefined;
    if (handler === undefined) throw new UnrecoverableError(`unknown job name ${job.name}`);
    const log = ctx.logger.child({ job: job.name, jobId: job.id });
    try {
      return await handler(job, ctx, log);
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
      const final = isFinalFailure(job, err);
      if (final) metrics.jobFinished(queue, 'failed');
      ctx.logger.warn(
        {
          queue,
          job: job.name,
          jobId: job.id,
          attempt: job.attemptsMade,
          final,
          err,
        },
        final ? 'job failed for good' : 'job failed; will retry',
      );
      const outboxKey = (job.data as { outboxKey?: unknown }).outboxKey;
      if (final && queue === QUEUES.effects && typeof outboxKey === 'string') {
        void finishOutbox(ctx.db, outboxKey, 'failed', describeError(err)).catch(() => undefined);
      }
    });
    return worker;
  });
}

/** True when a failed attempt was the job's last: no retry follows. */
export function isFinalFailure(job: Job, err: Error): boolean {
  return job.attemptsMade >= (job.opts.attempts ?? 1) || err instanceof UnrecoverableError;
}
