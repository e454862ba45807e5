import type { Job, JobsOptions } from 'bullmq';
import { eq } from 'drizzle-orm';
import type { z } from 'zod';
import { appendEvent } from '../adapters/db/daemon-writers';
import { loadOutbox } from '../adapters/db/outbox-store';
import { notifications } from '../adapters/db/schema';
import { notifyJobOptions, notifyQueueNameFor } from '../adapters/queue/notify-wiring';
import { catalog, type JobName, type QueueName } from '../adapters/queue/catalog';
import { evaluationOptions, QueueSet } from '../adapters/queue/queues';
import type { Daemon } from '../daemon';
import { badRequest, HttpError, idSchema, issuesOf, notFound } from './api';
import { actorName, type Principal } from './auth';
import { loadAccount } from './queries';

/**
 * Manual job triggers, shared by POST /v1/jobs/{name} and the dashboard's add-job form: the body
 * is the job's payload validated by the catalog's own zod schema (plus `confirmAccountId` for the
 * destructive ones), `origin` is replaced by `operator:<name>`, the job goes through the same
 * producer and options as the automatic one (evaluations deduplicated per account), and the
 * operator is written to the enforcement event log.
 *
 * - balance-scan / plan-scan: "scan now", "run a scheduler now" (adds the scheduler's job now).
 * - evaluate-account: one account now; `outboxKey`/`at` belong to the relay and are refused.
 * - outbox-relay: relay pending effects now.
 * - control-plane: run one effect again (e.g. a failed suspension): destructive, so the body
 *   repeats the effect's account in `confirmAccountId`. The job re-checks the state first.
 * - send-notification: resend one message by its dedupe key; a message already final (sent,
 *   delivered, failed, undeliverable, superseded) is never sent twice: 409.
 */

export interface PreparedJob {
  readonly name: JobName;
  readonly data: Record<string, unknown>;
  readonly opts: JobsOptions;
  /** Account the event is filed under; '*' for jobs about every account. */
  readonly accountId: string;
  /** Queue when not the catalog's (notifications go to their channel's queue). */
  readonly queue?: QueueName;
}

/** Schema of a manual trigger's body: the catalog payload plus `confirmAccountId`. */
export function manualSchema(name: JobName): z.ZodObject {
  const payload = catalog[name].payload as unknown as z.ZodObject;
  return payload.extend({
    confirmAccountId: idSchema
      .optional()
      .describe('The account id typed again; required for destructive jobs (control-plane)'),
  });
}

const FINAL = new Set(['sent', 'delivered', 'failed', 'undeliverable', 'superseded']);

/** A job id for an operator's re-run that cannot collide with the automatic job's id. */
const manualJobId = (key: string): string => `${key}-manual-${Date.now().toString(36)}`;

export async function prepareTrigger(
  daemon: Daemon,
  name: JobName,
  body: unknown,
  principal: Principal,
  location = 'body',
): Promise<PreparedJob> {
  const { db } = daemon.ctx;
  const schema = manualSchema(name);
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) throw badRequest(issuesOf(parsed.error, location));
  const { confirmAccountId, ...data } = parsed.data as Record<string, unknown> & {
    confirmAccountId?: string;
  };
  if ('origin' in schema.shape) data.origin = actorName(principal);

  switch (name) {
    case 'evaluate-account': {
      for (const field of ['outboxKey', 'at']) {
        if (data[field] !== undefined) {
          throw badRequest([
            { path: `${location}.${field}`, message: 'is set only by the outbox relay' },
          ]);
        }
      }
      const accountId = String(data.accountId);
      await loadAccount(db, accountId);
      return { name, data, opts: evaluationOptions(accountId, 'event'), accountId };
    }
    case 'control-plane': {
      const key = String(data.outboxKey);
      const entry = await loadOutbox(db, key);
      if (entry === null || entry.kind !== 'control-plane') throw notFound('effect', key);
      if (confirmAccountId !== entry.accountId) {
        throw badRequest([
          {
            path: `${location}.confirmAccountId`,
            message: "must repeat the effect's account id (destructive action)",
          },
        ]);
      }
      return { name, data, opts: { jobId: manualJobId(key) }, accountId: entry.accountId };
    }
    case 'send-notification': {
      const key = String(data.outboxKey);
      const [row] = await db
        .select({
          accountId: notifications.accountId,
          status: notifications.status,
          channel: notifications.channel,
        })
        .from(notifications)
        .where(eq(notifications.dedupeKey, key))
        .limit(1);
      if (row === undefined) throw notFound('notification', key);
      if (FINAL.has(row.status)) {
        throw new HttpError(
          409,
          'already-final',
          `notification ${key} is ${row.status}; a message is never sent twice`,
          { status: row.status },
        );
      }
      return {
        name,
        data,
        // The relay's own options for notifications (attempts, jittered backoff), same queue.
        opts: { ...notifyJobOptions(), jobId: manualJobId(key) },
        accountId: row.accountId,
        queue: notifyQueueNameFor(row.channel),
      };
    }
    default:
      return { name, data, opts: {}, accountId: '*' };
  }
}

/** Records who asked, in the event log. */
export async function recordTrigger(
  daemon: Daemon,
  job: PreparedJob,
  principal: Principal,
  via: 'api' | 'dashboard',
): Promise<void> {
  const detail = { ...job.data };
  delete detail.origin; // the actor says it
  await appendEvent(daemon.ctx.db, {
    accountId: job.accountId,
    kind: 'operator-job',
    actor: actorName(principal),
    detail: { job: job.name, via, ...detail },
  });
}

/** Validates, records and enqueues a manual trigger. */
export async function runTrigger(
  daemon: Daemon,
  name: JobName,
  body: unknown,
  principal: Principal,
): Promise<{ job: JobName; jobId: string | undefined; queue: string }> {
  const prepared = await prepareTrigger(daemon, name, body, principal);
  await recordTrigger(daemon, prepared, principal, 'api');
  // The validated payload goes to the job's queue (a notification's: its channel's) with the
  // catalog's options, as QueueSet.add would, which cannot pick the channel queue.
  const queue = daemon.ctx.queues.queueOf(name, prepared.queue);
  const job: Job = await queue.add(name, prepared.data, QueueSet.optionsFor(name, prepared.opts));
  return { job: name, jobId: job.id, queue: queue.name };
}
