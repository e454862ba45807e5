import { z } from 'zod';
import { ID_RE, ID_TEXT } from '../../domain/ids';

/**
 * The job catalog: every job the daemon runs, its queue, payload schema, attempts and backoff.
 * Producers and handlers are typed from it; the dashboard's add-job form validates against the
 * same schemas. Payloads carry ids only, never snapshots or personal data, and every schema
 * accepts the payloads of older versions (new fields are optional).
 */

const id = z.string().regex(ID_RE, `must match ${ID_TEXT}`);
/** Who asked: the scheduler, a database event, the outbox, or an operator by name. */
const origin = z.string().min(1).max(80).default('operator');

export const QUEUES = {
  scan: 'scan',
  evaluate: 'evaluate',
  effects: 'effects',
  /** One notification queue per channel: BullMQ rate limits are per queue. */
  notifyEmail: 'notify-email',
  notifySms: 'notify-sms',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/** A scheduled job of the scan queue (scans, pruning, the relay): three attempts. */
const periodic = (backoffMs = 5_000) =>
  ({
    queue: QUEUES.scan,
    payload: z.object({ origin }).strict(),
    attempts: 3,
    backoffMs,
  }) as const;

/** The job of one outbox row: the row's key only. */
const outboxRow = z.object({ outboxKey: z.string().min(1).max(200) }).strict();

export const catalog = {
  'balance-scan': periodic(),
  'plan-scan': periodic(),
  'evaluate-account': {
    queue: QUEUES.evaluate,
    payload: z
      .object({
        accountId: id,
        origin,
        /** Set by the outbox relay for timers (wake, release): the row to mark done. */
        outboxKey: z.string().min(1).max(255).optional(),
        /** Timer's due instant, epoch ms: the evaluation does not run before it. */
        at: z.number().int().nonnegative().optional(),
      })
      .strict(),
    attempts: 8,
    backoffMs: 500,
  },
  'evaluate-batch': {
    queue: QUEUES.evaluate,
    payload: z
      .object({
        /** A page of a scan's candidates, evaluated in one transaction (EVALUATE_BATCH_SIZE). */
        accountIds: z.array(id).min(1).max(1_000),
        origin,
      })
      .strict(),
    attempts: 8,
    backoffMs: 500,
  },
  prune: periodic(),
  'outbox-relay': periodic(1_000),
  'control-plane': {
    queue: QUEUES.effects,
    payload: outboxRow,
    attempts: 10,
    backoffMs: 1_000,
  },
  'send-notification': {
    /** Email's queue; an SMS goes to QUEUES.notifySms (see notifyQueueNameFor). */
    queue: QUEUES.notifyEmail,
    payload: outboxRow,
    // Retries are bounded by the message's age (NOTIFY_GIVE_UP_AFTER), not by this backstop:
    // backoff capped at 2 minutes, 1,000 attempts outlast a day.
    attempts: 1_000,
    backoffMs: 2_000,
  },
} as const;

export type JobName = keyof typeof catalog;
export type JobPayload<N extends JobName> = z.infer<(typeof catalog)[N]['payload']>;
export type JobInput<N extends JobName> = z.input<(typeof catalog)[N]['payload']>;

export const JOB_NAMES = Object.keys(catalog) as JobName[];

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(catalog, name);
}

/** Parses a job's data against its schema; the error names each bad field. */
export function parsePayload<N extends JobName>(name: N, data: unknown): JobPayload<N> {
  const result = catalog[name].payload.safeParse(data);
  if (!result.success) {
    const fields = result.error.issues
      .map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`)
      .join('; ');
    throw new InvalidPayloadError(`invalid ${name} payload: ${fields}`);
  }
  return result.data as JobPayload<N>;
}

export class InvalidPayloadError extends Error {
  override readonly name = 'InvalidPayloadError';
}

export function jobsOfQueue(queue: QueueName): JobName[] {
  return JOB_NAMES.filter((n) => catalog[n].queue === queue);
}
