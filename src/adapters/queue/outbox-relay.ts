import type { JobsOptions } from 'bullmq';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Logger } from '../../logger';
import type { Clock } from '../clock/clock';
import { queryRows, type Db, type Tx } from '../db/client';
import {
  markDispatched,
  noteOutboxRerun,
  settleOutbox,
  settleOutboxIds,
  supersedeOutboxKeys,
  type FinalStatus,
} from '../db/outbox-store';
import { catalog, QUEUES, type JobName, type QueueName } from './catalog';
import type { QueueSet } from './queues';

/**
 * The outbox relay: turns outbox rows into BullMQ jobs whose id is the row's idempotency key.
 *
 * Rows are claimed with `FOR UPDATE SKIP LOCKED` (several daemons share the work), enqueued, and
 * marked `dispatched` in the same transaction. A crash between enqueue and commit leaves the row
 * pending; the next relay enqueues it again under the same job id, which BullMQ ignores while the
 * job exists. It runs right after every evaluation that created effects (`request`), on a short
 * interval as a safety net, and from the dashboard as the `outbox-relay` job.
 *
 * `reconcile` covers Redis data loss: a dispatched row whose job is gone is enqueued again, so
 * no effect, timer or message is lost (their handlers are idempotent on the same key).
 *
 * The database, not Redis, says what is done. These jobs are removed when they complete (the
 * history is in the outbox, notifications and events tables, and in the metrics), and a
 * finished job still found under a row's key at dispatch (failed jobs are kept for operators;
 * a database restored or recreated under the same QUEUE_PREFIX meets the old database's jobs)
 * is removed first: BullMQ would otherwise keep it and silently drop the new job.
 */

interface OutboxRow {
  readonly id: number;
  readonly idempotency_key: string;
  readonly kind: string;
  readonly account_id: string;
  readonly payload: unknown;
  readonly available_at: Date | string;
  /** Times dispatched (read by reconcile). */
  readonly attempts?: number | string;
}

/** A row the relay finishes without a job. */
interface Settled {
  readonly id: number;
  readonly status: FinalStatus;
  readonly reason: string | null;
}

const cancelPayload = z.object({ jobKey: z.string().min(1) });
const notifyPayload = z.object({ channel: z.enum(['email', 'sms']) }).passthrough();

/** The notification queue of an outbox row (email when the payload does not say). */
function notifyQueueOf(payload: unknown): QueueName {
  const parsed = notifyPayload.safeParse(payload);
  return parsed.success && parsed.data.channel === 'sms' ? QUEUES.notifySms : QUEUES.notifyEmail;
}

export interface RelayOptions {
  readonly batchSize?: number;
  /** Options of send-notification jobs (their own attempts and backoff type). */
  readonly notifyOptions?: JobsOptions;
}

export class OutboxRelay {
  private running: Promise<void> | null = null;
  private again = false;
  private readonly batchSize: number;
  private readonly notifyOptions: JobsOptions;

  constructor(
    private readonly db: Db,
    private readonly queues: QueueSet,
    private readonly clock: Clock,
    private readonly logger: Logger,
    options: RelayOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 500;
    this.notifyOptions = options.notifyOptions ?? {};
  }

  /** Asks for a relay pass soon; passes never overlap, requests during one cause one more. */
  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  /** Runs passes until the outbox has nothing pending; resolves when done. */
  async drain(): Promise<number> {
    if (this.running) await this.running;
    return this.pass();
  }

  private async pass(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.relayBatch();
      total += n;
      if (n < this.batchSize) return total;
    }
  }

  /** Waits for a pass in progress (used at shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.pass();
      } catch (err) {
        this.logger.error({ err }, 'outbox relay pass failed; the poll will retry');
        return;
      }
    } while (this.again);
  }

  /** Claims and enqueues one batch; returns how many rows it moved. */
  async relayBatch(): Promise<number> {
    return this.db.transaction(async (tx) => {
      const rows = await queryRows<OutboxRow>(
        tx,
        sql`
        select id, idempotency_key, kind, account_id, payload, available_at
          from outbox
         where status = 'pending'
         order by id
         limit ${this.batchSize}
         for update skip locked`,
      );
      if (rows.length === 0) return 0;
      const settled: Settled[] = [];
      const held = await this.enqueue(rows, settled, tx);
      const settledIds = new Set(settled.map((x) => x.id));
      await markDispatched(
        tx,
        rows
          .filter((r) => !settledIds.has(Number(r.id)) && !held.has(r.idempotency_key))
          .map((r) => Number(r.id)),
      );
      await settleOutboxIds(tx, settled);
      this.logger.debug({ rows: rows.length, held: held.size }, 'outbox relayed');
      // Held rows are not counted as moved, so a pass does not spin on them.
      return rows.length - held.size;
    });
  }

  /**
   * Enqueues rows' jobs; rows that need no job (cancellations, unknown kinds) are pushed to
   * `settled`. With `tx` (the relay's pass), a cancellation also settles the timer it cancels, in
   * the pass's transaction: a cancelled timer's row is never `dispatched` again, so reconcile
   * cannot bring the timer back. Returns the keys held back because an earlier job under the key
   * is still running (their rows stay pending).
   */
  private async enqueue(
    rows: readonly OutboxRow[],
    settled: Settled[],
    tx: Tx | null = null,
  ): Promise<Set<string>> {
    const held = new Set<string>();
    const now = this.clock.now().getTime();
    type Batch = {
      name: JobName;
      queue?: QueueName;
      jobs: { data: Record<string, unknown>; opts: JobsOptions }[];
    };
    const batches = new Map<string, Batch>();
    const push = (
      name: JobName,
      data: Record<string, unknown>,
      opts: JobsOptions,
      queue?: QueueName,
    ) => {
      const id = `${name}/${queue ?? ''}`;
      const batch = batches.get(id) ?? { name, ...(queue ? { queue } : {}), jobs: [] };
      batch.jobs.push({ data, opts });
      batches.set(id, batch);
    };
    // A completed job under an idempotency key would make BullMQ ignore the next job with that
    // key: the row's outcome is the record, so the job goes once it has completed.
    const keyed = (key: string, opts: JobsOptions = {}): JobsOptions => ({
      ...opts,
      jobId: key,
      removeOnComplete: true,
    });
    const cancelled = new Set<string>();
    for (const row of rows) {
      const key = row.idempotency_key;
      const delay = Math.max(0, new Date(row.available_at).getTime() - now);
      switch (row.kind) {
        case 'control-plane':
          push('control-plane', { outboxKey: key }, keyed(key));
          break;
        case 'notify':
          push(
            'send-notification',
            { outboxKey: key },
            keyed(key, { ...this.notifyOptions, delay }),
            notifyQueueOf(row.payload),
          );
          break;
        case 'wake': {
          const at = new Date(row.available_at).getTime();
          push(
            'evaluate-account',
            { accountId: row.account_id, origin: 'timer', outboxKey: key, at },
            keyed(key, { delay }),
          );
          break;
        }
        case 'cancel-timer': {
          const parsed = cancelPayload.safeParse(row.payload);
          if (parsed.success) {
            cancelled.add(parsed.data.jobKey);
            if (tx !== null) {
              await supersedeOutboxKeys(tx, [parsed.data.jobKey], `cancelled by ${key}`);
            }
            // Removing the timer's job is an optimisation: if it still fires, the evaluation finds
            // the episode ended and releases nothing, and its settle finds the row superseded.
            await this.queues
              .queueOf('evaluate-account')
              .remove(parsed.data.jobKey)
              .catch(() => 0);
            settled.push({ id: Number(row.id), status: 'done', reason: null });
          } else {
            settled.push({ id: Number(row.id), status: 'failed', reason: 'bad cancel payload' });
          }
          break;
        }
        default:
          this.logger.error(
            { outboxKey: key, kind: row.kind },
            'unknown outbox kind; left for an operator',
          );
          settled.push({
            id: Number(row.id),
            status: 'failed',
            reason: `unknown kind ${row.kind}`,
          });
      }
    }
    for (const batch of batches.values()) {
      // A timer cancelled in the same pass is not enqueued (its row is superseded).
      batch.jobs = batch.jobs.filter((j) => !cancelled.has(String(j.opts.jobId)));
      if (batch.jobs.length === 0) continue;
      const queueName = batch.queue ?? catalog[batch.name].queue;
      const ids = batch.jobs.map((j) => String(j.opts.jobId));
      const { removed, active } = await this.queues.clearForAdd(queueName, ids);
      if (removed.length > 0) {
        this.logger.warn(
          { queue: queueName, removed: removed.length, keys: removed.slice(0, 5) },
          'finished jobs of an earlier dispatch found under outbox keys; removed and queued again',
        );
      }
      if (active.length > 0) {
        // BullMQ would drop the new job while the old one exists: the row stays pending, and a
        // later pass (the poll) enqueues it once the old job has finished and gone.
        this.logger.info(
          { queue: queueName, keys: active.slice(0, 5) },
          'an earlier job under the outbox key is still running; queued on a later pass',
        );
        for (const key of active) held.add(key);
        batch.jobs = batch.jobs.filter((j) => !held.has(String(j.opts.jobId)));
        if (batch.jobs.length === 0) continue;
      }
      await this.queues.addBulk(batch.name, batch.jobs, batch.queue);
    }
    return held;
  }

  /**
   * Re-enqueues dispatched rows whose job Redis no longer has (data loss, FLUSHALL, a trimmed
   * job whose handler died before recording the outcome), or has only as a completed job the
   * row does not reflect; settles rows whose job failed for good without its handler recording
   * it. Returns how many were re-enqueued.
   */
  async reconcile(): Promise<number> {
    let cursor = 0;
    let restored = 0;
    for (;;) {
      const rows = await queryRows<OutboxRow>(
        this.db,
        sql`
        select id, idempotency_key, kind, account_id, payload, available_at, attempts
          from outbox
         where status = 'dispatched' and id > ${cursor}
         order by id
         limit 1000`,
      );
      if (rows.length === 0) return restored;
      cursor = rows[rows.length - 1]?.id ?? cursor;
      const candidates: { row: OutboxRow; remove: (() => Promise<void>) | null }[] = [];
      await Promise.all(
        rows.map(async (row) => {
          const name = jobNameOf(row.kind);
          if (name === null) return;
          const queue = row.kind === 'notify' ? notifyQueueOf(row.payload) : undefined;
          const job = await this.queues.queueOf(name, queue).getJob(row.idempotency_key);
          if (job === undefined) {
            candidates.push({ row, remove: null });
            return;
          }
          const state = await job.getState();
          if (state === 'completed') candidates.push({ row, remove: () => job.remove() });
          else if (state === 'failed') {
            // Failed for good while the row is still dispatched: the handler's own settle did
            // not land. A timer is an evaluation, always safe to run again; an effect or a
            // message whose job failed for BullMQ's own reason (stalled too often: its workers
            // kept dying mid-job, the handler never decided) is still owed. Both run again a
            // few times; anything else, or after that, the row is failed with the reason, so
            // an operator sees it and the job no longer stands for the row.
            const rerun = row.kind === 'wake' || STALLED_OUT.test(job.failedReason ?? '');
            if (!rerun || Number(row.attempts ?? 0) >= STALL_RERUNS) {
              await settleOutbox(this.db, row.idempotency_key, {
                status: 'failed',
                reason: `job failed: ${job.failedReason}`,
              });
            } else {
              candidates.push({ row, remove: () => job.remove() });
              await noteOutboxRerun(this.db, Number(row.id));
            }
          }
        }),
      );
      // Re-read the rows before acting: a job that completed since the page was read (completed
      // jobs are removed at once) recorded its outcome first. A completed job under this id
      // while the row is still dispatched means Redis remembers a job the database does not (a
      // restored database, a reused prefix). The database wins.
      const missing: OutboxRow[] = [];
      if (candidates.length > 0) {
        const still = new Set(
          (
            await queryRows<{ id: string | number }>(
              this.db,
              sql`select id from outbox where status = 'dispatched' and id in (${sql.join(
                candidates.map((x) => sql`${x.row.id}`),
                sql`, `,
              )})`,
            )
          ).map((r) => String(r.id)),
        );
        for (const { row, remove } of candidates) {
          if (!still.has(String(row.id))) continue;
          if (remove !== null) await remove().catch(() => undefined);
          missing.push(row);
        }
      }
      if (missing.length > 0) {
        const ignored: Settled[] = [];
        await this.enqueue(missing, ignored);
        restored += missing.length;
        this.logger.warn(
          { restored: missing.length, keys: missing.slice(0, 5).map((r) => r.idempotency_key) },
          'outbox jobs missing from Redis re-enqueued',
        );
      }
    }
  }
}

function jobNameOf(kind: string): JobName | null {
  switch (kind) {
    case 'control-plane':
      return 'control-plane';
    case 'notify':
      return 'send-notification';
    case 'wake':
      return 'evaluate-account';
    default:
      return null;
  }
}

/** BullMQ's reason for a job failed because it stalled more than `maxStalledCount` times. */
const STALLED_OUT = /stalled more than allowable limit/;
/**
 * Times the relay re-runs a timer whose job failed, or an effect whose job BullMQ failed for
 * stalling (counted in outbox attempts).
 */
const STALL_RERUNS = 5;
