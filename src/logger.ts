import { pino, type DestinationStream, type Logger } from 'pino';
import { REDACTED, redactUrl, type LogLevel } from './config';
import { serializeError } from './describe-error';

export type { Logger } from 'pino';

/**
 * Keys whose whole value is secret, wherever they appear (top level and two levels down; pino's
 * redaction has no "any depth" wildcard, so deeper secrets must not be logged in the first place).
 */
const SECRET_KEYS = [
  'password',
  'pass',
  'secret',
  'token',
  'authToken',
  'accessToken',
  'refreshToken',
  'apiKey',
  'authorization',
  'cookie',
  'TWILIO_AUTH_TOKEN',
  'CONTROL_PLANE_SECRET',
  'DASHBOARD_PASSWORD',
];

/** Keys holding URLs that may carry a password: only the password part is masked. */
const URL_KEYS = [
  'url',
  'databaseUrl',
  'redisUrl',
  'smtpUrl',
  'apiBaseUrl',
  'smsStatusCallbackUrl',
  'topUpUrl',
  'CONTROL_PLANE_URL',
  'TWILIO_API_BASE_URL',
  'SMS_STATUS_CALLBACK_URL',
  'connectionString',
  'DATABASE_URL',
  'REDIS_URL',
  'SMTP_URL',
];

/** HTTP headers that carry credentials, as logged by request/response serializers. */
const HEADER_KEYS = ['authorization', 'cookie', 'set-cookie', 'proxy-authorization'];

function atAnyShallowDepth(key: string): string[] {
  return [key, `*.${key}`, `*.*.${key}`];
}

export const REDACT_PATHS: readonly string[] = [
  ...[...SECRET_KEYS, ...URL_KEYS].flatMap(atAnyShallowDepth),
  ...HEADER_KEYS.flatMap((h) => [`headers["${h}"]`, `*.headers["${h}"]`, `*.*.headers["${h}"]`]),
];

const URL_KEY_SET = new Set(URL_KEYS);

/** URLs keep their host (useful when debugging) and lose their password; the rest is masked. */
function censor(value: unknown, path: string[]): unknown {
  const key = path[path.length - 1];
  if (key !== undefined && URL_KEY_SET.has(key)) {
    if (typeof value === 'string') return redactUrl(value);
    if (value === null) return null;
  }
  return REDACTED;
}

/**
 * The root logger: JSON lines to `destination` (stdout by default), secrets masked by key, and
 * errors (`err`, `error`) described without personal data: SQLSTATE, constraint, table and the
 * stack's frames, never a failed query's SQL or parameters nor the row PostgreSQL quotes
 * (src/describe-error.ts). Create it once in main.ts and hand children to the parts of the program.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'overdue-worker', pid: process.pid },
    redact: { paths: [...REDACT_PATHS], censor },
    serializers: { err: serializeError, error: serializeError },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** A child logger for one part of the program (`component`) with extra fixed fields. */
export function childLogger(
  parent: Logger,
  component: string,
  bindings: Record<string, unknown> = {},
): Logger {
  return parent.child({ ...bindings, component });
}

const LEVEL_METHODS: ReadonlySet<string> = new Set([
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
]);
const skip = (): void => undefined;

/**
 * `parent.child(bindings)`, made only when it is first needed: a call at an enabled level (or any
 * other use) makes the child, a call below the level costs nothing. pino's child() sets up the
 * redaction of its bindings each time, which a job that logs nothing at the configured level
 * should not pay for.
 */
export function lazyChildLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  const made = (): Logger => (child ??= parent.child(bindings));
  return new Proxy(parent, {
    get(target, prop) {
      if (child === undefined && typeof prop === 'string' && LEVEL_METHODS.has(prop)) {
        if (!target.isLevelEnabled(prop)) return skip;
      }
      const c = made();
      const value: unknown = Reflect.get(c, prop, c);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(c) : value;
    },
  });
}

/**
 * At most one log line per key per `intervalMs`: `take(key)` answers the number of calls
 * suppressed since the last line (0 or more) when a line may be written now, null otherwise.
 */
export class LogThrottle {
  private readonly last = new Map<string, { atMs: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): number | null {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry !== undefined && now - entry.atMs < this.intervalMs) {
      entry.suppressed += 1;
      return null;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { atMs: now, suppressed: 0 });
    return suppressed;
  }
}
