import { Redis } from 'ioredis';
import { describeError } from '../../describe-error';
import type { Logger } from '../../logger';
import type { RedisLink } from './redis-link';

/**
 * Redis connections per BullMQ's production guidance: workers never give up on a command
 * (`maxRetriesPerRequest: null`, so a Redis restart pauses them instead of failing jobs), the
 * producer connection fails a command after a few retries so callers see an outage, both
 * reconnect with capped backoff, and every connection has an error listener (an unhandled
 * 'error' event would crash the process).
 */
export type RedisRole = 'producer' | 'worker';

/**
 * With a `link`, connection errors and recoveries are reported to it (one log line per change of
 * state, redis-link.ts); without one (the CLI), errors are logged at most once per 10 s.
 */
export function createRedis(url: string, role: RedisRole, logger: Logger, link?: RedisLink): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: role === 'worker' ? null : 3,
    enableReadyCheck: true,
    connectionName: `overdue-worker-${role}`,
    // ms until the next reconnect attempt: 100 ms growing to 3 s.
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 3_000),
    lazyConnect: false,
  });
  if (link !== undefined) {
    redis.on('error', (err: Error) => link.error(err, `redis-${role}`));
    redis.on('ready', () => link.ready());
    return redis;
  }
  let lastLogged = 0;
  redis.on('error', (err: Error) => {
    // A dead Redis emits an error per reconnect attempt; log at most one per 10 s.
    const now = Date.now();
    if (now - lastLogged > 10_000) {
      lastLogged = now;
      logger.error({ err, role }, 'redis connection error');
    }
  });
  return redis;
}

/** Resolves when Redis answers PING within `timeoutMs`, rejects with a clear message otherwise. */
export async function assertRedisAnswers(url: string, timeoutMs: number): Promise<void> {
  const probe = new Redis(url, {
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    lazyConnect: true,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    const policy = (await probe.config('GET', 'maxmemory-policy').catch(() => [])) as string[];
    if (policy[1] !== undefined && policy[1] !== 'noeviction') {
      throw new Error(
        `Redis maxmemory-policy is ${policy[1]}; BullMQ needs noeviction (redis-server --maxmemory-policy noeviction)`,
      );
    }
  } catch (error) {
    const where = redactUrl(url);
    const detail = describeError(error);
    throw new Error(
      `Redis does not answer at ${where} (${detail}). Start one with 'docker compose up -d redis' ` +
        `or your distribution's package (apt-get install redis-server), or set REDIS_URL.`,
    );
  } finally {
    probe.disconnect();
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'REDIS_URL';
  }
}
