import { createHash } from 'node:crypto';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { catalog, QUEUES, type JobInput, type JobName, type QueueName } from './catalog';

/**
 * The daemon's queues and its one way of adding jobs. Options come from the catalog (attempts,
 * exponential backoff); finished jobs are trimmed so Redis memory stays bounded. Job ids are the
 * effects' idempotency keys (never containing ':'); the database, not Redis, remembers what was
 * done, so trimming a finished job never re-runs its effect.
 */
export class QueueSet {
  readonly byName: Readonly<Record<QueueName, Queue>>;

  constructor(
    private readonly connection: Redis,
    prefix: string,
  ) {
    const make = (name: QueueName) => {
      const queue = new Queue(name, { connection, prefix });
      // A queue re-emits its connection's errors; without a listener BullMQ writes each one to
      // stderr (one per reconnect attempt while Redis is away). The connection's own listener
      // (createRedis) already logs them, throttled.
      queue.on('error', () => undefined);
      return queue;
    };
    this.byName = {
      scan: make(QUEUES.scan),
      evaluate: make(QUEUES.evaluate),
      effects: make(QUEUES.effects),
      'notify-email': make(QUEUES.notifyEmail),
      'notify-sms': make(QUEUES.notifySms),
    };
  }

  /** The queue a job goes to; notifications by channel (`queue` overrides the catalog's). */
  queueOf(name: JobName, queue?: QueueName): Queue {
    return this.byName[queue ?? catalog[name].queue];
  }

  static optionsFor(name: JobName, extra: JobsOptions = {}): JobsOptions {
    const entry = catalog[name];
    return {
      attempts: entry.attempts,
      backoff: { type: 'exponential', delay: entry.backoffMs },
      removeOnComplete: { age: 3_600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3_600, count: 50_000 },
      ...extra,
    };
  }

  async add<N extends JobName>(name: N, data: JobInput<N>, extra: JobsOptions = {}): Promise<Job> {
    // Validate on the way in too: a bad producer fails here, not later in a worker.
    const parsed = catalog[name].payload.parse(data) as object;
    return this.queueOf(name).add(name, parsed, QueueSet.optionsFor(name, extra));
  }

  async addBulk<N extends JobName>(
    name: N,
    jobs: readonly { data: JobInput<N>; opts?: JobsOptions }[],
    queue?: QueueName,
  ): Promise<void> {
    if (jobs.length === 0) return;
    await this.queueOf(name, queue).addBulk(
      jobs.map((j) => ({
        name,
        data: catalog[name].payload.parse(j.data),
        opts: QueueSet.optionsFor(name, j.opts),
      })),
    );
  }

  /**
   * Clears the way for jobs about to be added under these ids: BullMQ keeps an existing job and
   * silently drops a new one with its id. Finished jobs (completed or failed) left under the ids
   * are removed: they belong to an earlier dispatch the database no longer reflects (a database
   * restored or recreated under the same QUEUE_PREFIX, a relay that crashed before its commit).
   * Ids whose job is being processed are returned as `active`: the row was sent back to pending
   * while its previous job finishes (a low-balance reminder wanted again just after it was
   * superseded), so its new job must wait until that one is gone. One round trip for the batch
   * (a job state is asked only for ids that have a processed, unfinished job).
   */
  async clearForAdd(
    queueName: QueueName,
    ids: readonly string[],
  ): Promise<{ removed: string[]; active: string[] }> {
    const removed: string[] = [];
    const active: string[] = [];
    if (ids.length === 0) return { removed, active };
    const queue = this.byName[queueName];
    const pipeline = this.connection.pipeline();
    for (const id of ids) pipeline.hmget(queue.toKey(id), 'finishedOn', 'processedOn');
    const answers = (await pipeline.exec()) ?? [];
    for (const [i, id] of ids.entries()) {
      const [err, fields] = answers[i] ?? [null, null];
      if (err !== null || !Array.isArray(fields)) continue;
      const [finishedOn, processedOn] = fields as (string | null)[];
      if (finishedOn == null && processedOn == null) continue;
      // finishedOn is cleared when a finished job is retried: confirm before acting.
      const state = await queue.getJobState(id);
      if (state === 'active') active.push(id);
      else if (state === 'completed' || state === 'failed') {
        if ((await queue.remove(id)) === 1) removed.push(id);
      }
    }
    return { removed, active };
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.byName).map((q) => q.close()));
  }
}

/** BullMQ priority of scan-made evaluations (1 is the highest; none is above all). */
export const SCAN_PRIORITY = 10;

/** Evaluation jobs of one account collapse: one waiting at most, plus one after an active one. */
export function evaluationOptions(accountId: string, mode: 'event' | 'scan'): JobsOptions {
  return {
    // Events (payments, operators, timers) go before scan fan-out: BullMQ takes jobs without a
    // priority first, so a payment never waits behind a 30,000-account scan backlog.
    ...(mode === 'scan' ? { priority: SCAN_PRIORITY } : {}),
    deduplication: {
      id: `eval-${accountId}`,
      // An event (payment, operator) arriving during an evaluation must be seen: keep one more.
      // A scan arriving during one needs nothing new: the running evaluation is recent enough.
      ...(mode === 'event' ? { keepLastIfActive: true } : {}),
    },
  };
}

/**
 * A scan's candidates as `evaluate-batch` jobs of at most `batchSize` accounts each, in the
 * order given (id order), at scan priority. A page already waiting (the same ids from an earlier
 * scan) is not added twice.
 */
export function evaluationBatches(
  accountIds: readonly string[],
  batchSize: number,
  origin: string,
): { data: { accountIds: string[]; origin: string }; opts: JobsOptions }[] {
  const jobs = [];
  for (let i = 0; i < accountIds.length; i += batchSize) {
    const page = accountIds.slice(i, i + batchSize);
    const digest = createHash('sha1').update(page.join(',')).digest('hex');
    jobs.push({
      data: { accountIds: page, origin },
      opts: { priority: SCAN_PRIORITY, deduplication: { id: `eval-page-${digest}` } },
    });
  }
  return jobs;
}

/**
 * A balance scan and a plan scan that read every candidate (as an operator's would), after the
 * enforcement mode went back to enforce: accounts are evaluated afresh on their state now.
 */
export async function enqueueFreshScans(queues: QueueSet, origin: string): Promise<void> {
  await queues.add('balance-scan', { origin });
  await queues.add('plan-scan', { origin });
}
