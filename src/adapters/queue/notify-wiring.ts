import type { BackoffStrategy } from 'bullmq';
import type { Config } from '../../config';
import type { Channel } from '../../domain/snapshot';
import { catalog } from './catalog';

/** Queue wiring of send-notification jobs: queue per channel, rate limits, retry delays. */

/** Backoff type to put in the jobs' options so BullMQ calls `notifyBackoffStrategy`. */
export const NOTIFY_BACKOFF_TYPE = 'notify-jitter';
/**
 * Longest wait between two attempts, ms: once a provider recovers, every waiting message goes
 * within this (their age, not their attempt count, decides when they give up).
 */
const MAX_BACKOFF_MS = 2 * 60_000;

/**
 * One queue per channel, because BullMQ limiters are per queue: the email and SMS rate limits
 * (held in Redis, so across every daemon) must not throttle each other.
 */
export function notifyQueueNameFor(channel: Channel): 'notify-email' | 'notify-sms' {
  return channel === 'email' ? 'notify-email' : 'notify-sms';
}

/** BullMQ Worker `limiter` for a channel's queue; undefined when the limit is 'off'. */
export function notifyWorkerLimiter(
  config: Config,
  channel: Channel,
): { max: number; duration: number } | undefined {
  const perSecond =
    channel === 'email' ? config.notify.emailRatePerSecond : config.notify.smsRatePerSecond;
  return perSecond === null ? undefined : { max: perSecond, duration: 1_000 };
}

/** Job options for a send-notification job (jobId = the outbox key, set by the relay). */
export function notifyJobOptions(): {
  attempts: number;
  backoff: { type: string; delay: number };
} {
  const entry = catalog['send-notification'];
  return {
    attempts: entry.attempts,
    backoff: { type: NOTIFY_BACKOFF_TYPE, delay: entry.backoffMs },
  };
}

/**
 * BullMQ `settings.backoffStrategy`: exponential from the job's backoff delay, with "equal
 * jitter" (half fixed, half random) so that a burst of 429s does not retry in lockstep, capped
 * at MAX_BACKOFF_MS. `attemptsMade` counts attempts already made (1 after the first failure).
 */
export const notifyBackoffStrategy = ((attemptsMade, _type, _err, job): number => {
  const base = (job?.opts.backoff as { delay?: number } | undefined)?.delay ?? 2_000;
  const exp = Math.min(MAX_BACKOFF_MS, base * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}) satisfies BackoffStrategy;
