import { describeError } from '../../describe-error';
import { metrics } from '../../observability/metrics';
import { LogThrottle, type Logger } from '../../logger';

/**
 * The workers' view of Redis, logged once per change of state: a dead Redis makes every worker
 * and connection emit an error per reconnect attempt (180 lines in 25 s), so the first
 * connection error logs "redis connection lost", later ones are only counted, and the next
 * `ready` of a connection logs "redis connection back" with how long it was lost and how many
 * errors were swallowed. The state is also the gauge overdue_redis_connected.
 *
 * Worker errors that are not about the connection (a script error, a bug) are logged, at most
 * once a minute per queue with the number suppressed since.
 */

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** Whether an error says that Redis cannot be reached (rather than that a command failed). */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONNECTION_CODES.has(code)) return true;
  const message = error instanceof Error ? error.message : String(error);
  return /Connection is closed|Stream isn't writeable|connect E[A-Z]+|read E[A-Z]+|write E[A-Z]+|Reached the max retries/i.test(
    message,
  );
}

export class RedisLink {
  private up = true;
  private lostAtMs = 0;
  private swallowed = 0;
  private readonly otherErrors = new LogThrottle(60_000);

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get connected(): boolean {
    return this.up;
  }

  /** An error from a connection or a worker (`source`: the queue or connection role). */
  error(err: unknown, source: string): void {
    if (!this.up) {
      this.swallowed += 1;
      return;
    }
    if (isConnectionError(err)) {
      this.up = false;
      this.lostAtMs = this.now();
      this.swallowed = 0;
      metrics.redisConnected(false);
      this.logger.error({ source, error: describeError(err) }, 'redis connection lost');
      return;
    }
    const suppressed = this.otherErrors.take(source);
    if (suppressed !== null) this.logger.error({ err, source, suppressed }, 'worker error');
  }

  /** A connection is ready again. */
  ready(): void {
    if (this.up) return;
    this.up = true;
    metrics.redisConnected(true);
    this.logger.info(
      { lostForMs: this.now() - this.lostAtMs, errorsWhileLost: this.swallowed },
      'redis connection back',
    );
  }
}
