import { z } from 'zod';
import type { RuleSettings } from '../domain/rules';
import { Invalid, isLoopback, type Parsed } from './parsers';
import { SETTINGS, type SettingName, type SettingTable } from './settings';

// ---------------------------------------------------------------------------------------------
// The schema, derived from the table. Every field is an optional string in the environment; a
// helper turns a parser into a zod schema that reports a custom issue (with our own, value-free
// message) on failure.

function setting<T>(parse: (raw: string) => Parsed<T>, fallback: string) {
  return z
    .string({ error: 'must be text' })
    .optional()
    .transform((raw, ctx): T => {
      const result = parse(raw ?? fallback);
      if (result instanceof Invalid) {
        ctx.addIssue({ code: 'custom', message: result.message });
        return z.NEVER;
      }
      return result;
    });
}

function optionalSetting<T>(parse: (raw: string) => Parsed<T>) {
  return z
    .string({ error: 'must be text' })
    .optional()
    .transform((raw, ctx): T | null => {
      if (raw === undefined) return null;
      const result = parse(raw);
      if (result instanceof Invalid) {
        ctx.addIssue({ code: 'custom', message: result.message });
        return z.NEVER;
      }
      return result;
    });
}

/**
 * A table entry as the schema sees it: its parser and its default (null: none, the value is null
 * when unset).
 */
interface Entry<T> {
  readonly parse: (raw: string) => Parsed<T>;
  readonly fallback: string | null;
}

/** The zod field of one table entry: with its default, or null when unset. */
type Field<E> =
  E extends Entry<infer T>
    ? E['fallback'] extends string
      ? ReturnType<typeof setting<T>>
      : ReturnType<typeof optionalSetting<T>>
    : never;

function field(entry: Entry<unknown>) {
  return entry.fallback === null
    ? optionalSetting(entry.parse)
    : setting(entry.parse, entry.fallback);
}

/** The zod fields of the environment schema, one per table entry, in table order. */
const fields = Object.fromEntries(
  Object.entries(SETTINGS).map(([name, entry]) => [name, field(entry)]),
) as { [K in SettingName]: Field<SettingTable[K]> };

type Key = SettingName;
/** Settings that are null when unset (no default). */
type NullableKey = {
  [K in Key]: SettingTable[K]['fallback'] extends null ? K : never;
}[Key];

/** The environment: the table's fields, then the rules between settings. */
export const envSchema = z.object(fields).superRefine(
  (env, ctx) => {
    // Runs even when some fields failed (`when` below), so one start lists every problem.
    // Presence rules look only at whether a setting was given (a bad value was given too);
    // relations between values are checked only when every value involved parsed cleanly.
    const failed = new Set(ctx.issues.map((issue) => String(issue.path?.[0] ?? '')));
    const ok = (...names: Key[]) => names.every((n) => !failed.has(n));
    const given = (name: NullableKey) => failed.has(name) || env[name] !== null;
    const problem = (name: Key, message: string) =>
      ctx.addIssue({ code: 'custom', path: [name], message });

    if (given('CONTROL_PLANE_URL') && !given('CONTROL_PLANE_SECRET')) {
      problem('CONTROL_PLANE_SECRET', 'is required when CONTROL_PLANE_URL is set');
    }
    if (!given('CONTROL_PLANE_URL') && given('CONTROL_PLANE_SECRET')) {
      problem(
        'CONTROL_PLANE_URL',
        'is required when CONTROL_PLANE_SECRET is set (unset both for database-only mode)',
      );
    }

    if (given('DASHBOARD_USER') && !given('DASHBOARD_PASSWORD')) {
      problem('DASHBOARD_PASSWORD', 'is required when DASHBOARD_USER is set');
    }
    if (!given('DASHBOARD_USER') && given('DASHBOARD_PASSWORD')) {
      problem('DASHBOARD_USER', 'is required when DASHBOARD_PASSWORD is set');
    }
    if (given('DASHBOARD_VIEWER_USER') && !given('DASHBOARD_VIEWER_PASSWORD')) {
      problem('DASHBOARD_VIEWER_PASSWORD', 'is required when DASHBOARD_VIEWER_USER is set');
    }
    if (!given('DASHBOARD_VIEWER_USER') && given('DASHBOARD_VIEWER_PASSWORD')) {
      problem('DASHBOARD_VIEWER_USER', 'is required when DASHBOARD_VIEWER_PASSWORD is set');
    }
    if (
      ok('DASHBOARD_USER', 'DASHBOARD_VIEWER_USER') &&
      env.DASHBOARD_USER !== null &&
      env.DASHBOARD_USER === env.DASHBOARD_VIEWER_USER
    ) {
      problem('DASHBOARD_VIEWER_USER', 'must differ from DASHBOARD_USER');
    }

    const openDashboard = !given('DASHBOARD_USER') && !given('DASHBOARD_PASSWORD');
    if (ok('DEMO', 'HOST') && env.DEMO && openDashboard && !isLoopback(env.HOST)) {
      problem(
        'HOST',
        'must be a loopback address when DEMO=true without DASHBOARD_USER/DASHBOARD_PASSWORD (the dashboard would be open to the network)',
      );
    }

    if (given('SMTP_URL') && !given('MAIL_FROM')) {
      problem('MAIL_FROM', 'is required when SMTP_URL is set');
    }

    const twilio = [
      'TWILIO_ACCOUNT_SID',
      'TWILIO_AUTH_TOKEN',
      'TWILIO_FROM',
      'TWILIO_MESSAGING_SERVICE_SID',
      'TWILIO_API_BASE_URL',
    ] as const;
    if (twilio.some(given)) {
      const why = 'is required when any TWILIO_* setting is set';
      if (!given('TWILIO_ACCOUNT_SID')) problem('TWILIO_ACCOUNT_SID', why);
      if (!given('TWILIO_AUTH_TOKEN')) problem('TWILIO_AUTH_TOKEN', why);
      if (!given('TWILIO_FROM') && !given('TWILIO_MESSAGING_SERVICE_SID')) {
        problem('TWILIO_FROM', 'or TWILIO_MESSAGING_SERVICE_SID is required to send SMS');
      }
    }

    const dkim = ['DKIM_DOMAIN', 'DKIM_SELECTOR', 'DKIM_PRIVATE_KEY_FILE'] as const;
    if (dkim.some(given)) {
      for (const name of dkim) {
        if (!given(name)) problem(name, 'is required when any DKIM_* setting is set');
      }
    }

    if (
      ok('HTTP_HEADERS_TIMEOUT', 'HTTP_REQUEST_TIMEOUT') &&
      env.HTTP_HEADERS_TIMEOUT > env.HTTP_REQUEST_TIMEOUT
    ) {
      problem('HTTP_HEADERS_TIMEOUT', 'must not be longer than HTTP_REQUEST_TIMEOUT');
    }

    if (
      ok('STUDIO_RELEASE_DELAY', 'STUDIO_RELEASE_WARNING') &&
      env.STUDIO_RELEASE_WARNING >= env.STUDIO_RELEASE_DELAY
    ) {
      problem('STUDIO_RELEASE_WARNING', 'must be shorter than STUDIO_RELEASE_DELAY');
    }
  },
  { when: () => true },
);

type Env = z.output<typeof envSchema>;

/**
 * One setting's value checked by the same parser as at start (e.g. a scheduler interval edited
 * in the dashboard against SCAN_INTERVAL): null when valid, else the value-free message.
 */
export function settingProblem(name: keyof Env, raw: string): string | null {
  const result = fields[name].safeParse(raw);
  return result.success ? null : (result.error.issues[0]?.message ?? 'is not valid');
}

/** Every setting this program reads, in documentation order. */
export const SETTING_NAMES = Object.keys(envSchema.shape) as readonly (keyof Env)[];

// ---------------------------------------------------------------------------------------------
// The typed configuration handed to the rest of the program: its shape is what toConfig builds,
// read-only all the way down for its users.

/** Host names a loopback-bound server answers to when ALLOWED_HOSTS is unset. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** Used when SMTP_URL is unset and so is MAIL_FROM (messages only go to the outbox folder). */
export const DEFAULT_MAIL_FROM = 'overdue-worker <no-reply@localhost>';

/**
 * The settings the policy's rules are made of (rulesOf reads no other: its parameter's type says
 * so). A what-if may propose new values for these.
 */
export const RULE_SETTING_NAMES = [
  'LOW_BALANCE_REMINDER_INTERVAL',
  'LOW_BALANCE_THRESHOLD_MINOR',
  'OVERDUE_REMINDER_INTERVAL',
  'PROTECTION_AMOUNT_MINOR',
  'PROTECTION_DURATION',
  'LIVE_PRODUCTS',
  'STUDIO_RELEASE_DELAY',
  'STUDIO_RELEASE_WARNING',
  'PLAN_ALERT_THRESHOLDS',
  'PLAN_EXPIRY_REMINDERS',
  'REVERT_NOTICE_WINDOW',
  'QUIET_HOURS',
] as const satisfies readonly SettingName[];
export type RuleSettingName = (typeof RULE_SETTING_NAMES)[number];

function rulesOf(env: Pick<Env, RuleSettingName>): RuleSettings {
  return {
    lowBalanceReminder: env.LOW_BALANCE_REMINDER_INTERVAL,
    lowBalanceThresholdMinor: env.LOW_BALANCE_THRESHOLD_MINOR,
    overdueReminder: env.OVERDUE_REMINDER_INTERVAL,
    defaultProtection: {
      amountMinor: env.PROTECTION_AMOUNT_MINOR,
      durationMs: env.PROTECTION_DURATION,
    },
    liveProducts: env.LIVE_PRODUCTS,
    studioReleaseDelayMs: env.STUDIO_RELEASE_DELAY,
    studioReleaseWarningMs: env.STUDIO_RELEASE_WARNING,
    planThresholds: env.PLAN_ALERT_THRESHOLDS,
    planExpiryReminderMs: env.PLAN_EXPIRY_REMINDERS,
    revertNoticeWindowMs: env.REVERT_NOTICE_WINDOW,
    quietHours: env.QUIET_HOURS,
  };
}

/**
 * The parsed environment mapped to the configuration's shape; the one place that shape is
 * written. `ruleInput`: the rule settings as text (as given, else the default), for a what-if to start from.
 */
export function toConfig(env: Env, ruleInput: Readonly<Partial<Record<RuleSettingName, string>>>) {
  const { TWILIO_ACCOUNT_SID: accountSid, TWILIO_AUTH_TOKEN: authToken } = env;
  const rules = rulesOf(env);
  return {
    /** The rule settings as text (as given, else the default), for a what-if to start from. */
    ruleInput,
    /** null: embedded PGlite under `dataDir`. */
    databaseUrl: env.DATABASE_URL,
    dataDir: env.DATA_DIR,
    redisUrl: env.REDIS_URL,
    /** BullMQ key prefix; a {hash-tag} keeps every key of a queue in one Redis Cluster slot. */
    queuePrefix: env.QUEUE_PREFIX,
    port: env.PORT,
    host: env.HOST,
    mail: {
      /** null: messages go to the outbox folder under `dataDir` and the log instead of SMTP. */
      smtpUrl: env.SMTP_URL,
      from: env.MAIL_FROM ?? DEFAULT_MAIL_FROM,
    },
    /** null: SMS go to the outbox folder and the log instead of Twilio. */
    sms:
      accountSid !== null && authToken !== null
        ? {
            accountSid,
            authToken,
            /** Sender number; null when only a messaging service is configured. */
            from: env.TWILIO_FROM,
            /** Takes precedence over `from` at Twilio when both are set. */
            messagingServiceSid: env.TWILIO_MESSAGING_SERVICE_SID,
            /** Base URL of a Twilio-compatible API; null for Twilio itself. */
            apiBaseUrl: env.TWILIO_API_BASE_URL,
          }
        : null,
    /** null: database-only mode, the `services` table is the effect. */
    controlPlane:
      env.CONTROL_PLANE_URL !== null && env.CONTROL_PLANE_SECRET !== null
        ? { url: env.CONTROL_PLANE_URL, secret: env.CONTROL_PLANE_SECRET }
        : null,
    /** null: the dashboard is not mounted (unless `demo`, where it is mounted without auth). */
    dashboard:
      env.DASHBOARD_USER !== null && env.DASHBOARD_PASSWORD !== null
        ? { user: env.DASHBOARD_USER, password: env.DASHBOARD_PASSWORD }
        : null,
    demo: env.DEMO,
    logLevel: env.LOG_LEVEL,
    /** Written at start unless an operator set the mode since (adapters/db/control-store.ts). */
    enforcementMode: env.ENFORCEMENT_MODE,
    /** Null when off. Written at start (adapters/db/breaker-store.ts); every daemon reads it there. */
    suspensionBreaker: env.SUSPENSION_BREAKER,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT,
    /** statement_timeout of each ingest batch's statements, ms. */
    ingestStatementTimeoutMs: env.INGEST_STATEMENT_TIMEOUT,
    scanIntervalMs: env.SCAN_INTERVAL,
    /**
     * The periodic scan skips an account in enforcement (suspended, protected, overdue) that was
     * evaluated less than this ago and has no bill that fell due since; start-up, listener
     * reconnects and operators scan everything.
     */
    scanRecheckIntervalMs: env.SCAN_RECHECK_INTERVAL,
    planScanIntervalMs: env.PLAN_SCAN_INTERVAL,
    /**
     * Ages after which the prune job deletes finished rows, ms: outbox rows (done, failed,
     * superseded; by their last change), final notifications, and enforcement events.
     */
    retention: {
      outboxMs: env.RETENTION_OUTBOX,
      notificationsMs: env.RETENTION_NOTIFICATIONS,
      eventsMs: env.RETENTION_EVENTS,
    },
    /** Accounts read per keyset page of a scan. */
    scanPageSize: env.SCAN_PAGE_SIZE,
    /** PostgreSQL connections of one daemon (evaluations, effects and senders share them). */
    dbPoolSize: env.DB_POOL_SIZE,
    dbPrepare: env.DB_PREPARE,
    /**
     * statement_timeout of the daemon's connections, ms; null: none. A connection silent this
     * long plus 30 s while it owes answers is taken for dead on the client side.
     */
    dbStatementTimeoutMs: env.DB_STATEMENT_TIMEOUT,
    /** idle_in_transaction_session_timeout of the daemon's connections, ms; null: none. */
    dbIdleInTransactionTimeoutMs: env.DB_IDLE_IN_TRANSACTION_TIMEOUT,
    /** Evaluations one daemon runs at once. */
    evaluateConcurrency: env.EVALUATE_CONCURRENCY,
    evaluateBatchSize: env.EVALUATE_BATCH_SIZE,
    /** Control-plane effects one daemon runs at once. */
    effectsConcurrency: env.EFFECTS_CONCURRENCY,
    /** Safety-net poll of the outbox (the relay also runs right after each commit). */
    outboxPollIntervalMs: env.OUTBOX_POLL_INTERVAL,
    /** Deadline of one control-plane request. */
    controlPlaneTimeoutMs: env.CONTROL_PLANE_TIMEOUT,
    notify: {
      /** Notification jobs one daemon runs at once, per channel queue. */
      concurrency: env.NOTIFY_CONCURRENCY,
      /** Deadline of one provider call (SMTP transaction or Twilio request), ms. */
      timeoutMs: env.NOTIFY_TIMEOUT,
      /**
       * A message still failing transiently this long after it was queued fails for good (and
       * falls back to the other channel), ms. Until then it is retried, at least every 2 minutes.
       */
      giveUpAfterMs: env.NOTIFY_GIVE_UP_AFTER,
      /** Emails per second across every daemon (BullMQ limiter of the email queue); null: no limit. */
      emailRatePerSecond: env.EMAIL_RATE_LIMIT,
      /** SMS per second across every daemon; null: no limit. */
      smsRatePerSecond: env.SMS_RATE_LIMIT,
      /** Public URL of POST /v1/callbacks/sms as Twilio calls it (also what signatures are checked against). */
      smsStatusCallbackUrl: env.SMS_STATUS_CALLBACK_URL,
      /** Where customers top up or pay; shown in notices. null: the notices say "in the console". */
      topUpUrl: env.TOP_UP_URL,
      /** DKIM signing of outgoing mail; null: unsigned (let the relay sign). */
      dkim:
        env.DKIM_DOMAIN !== null && env.DKIM_SELECTOR !== null && env.DKIM_PRIVATE_KEY_FILE !== null
          ? {
              domain: env.DKIM_DOMAIN,
              selector: env.DKIM_SELECTOR,
              privateKeyFile: env.DKIM_PRIVATE_KEY_FILE,
            }
          : null,
      operators: {
        emails: env.OPERATOR_EMAILS,
        phones: env.OPERATOR_PHONES,
        /** At most one alert per alert key per interval, ms. */
        alertIntervalMs: env.OPERATOR_ALERT_INTERVAL,
      },
    },
    /** Local calendar dates (YYYY-MM-DD) skipped as business days for refund arrival (R11). */
    holidays: env.HOLIDAYS,
    rules,
    /** /metrics answers without credentials (for a scraper on a trusted network). */
    metricsPublic: env.METRICS_PUBLIC,
    /** Read-only dashboard and API account; null: none. */
    dashboardViewer:
      env.DASHBOARD_VIEWER_USER !== null && env.DASHBOARD_VIEWER_PASSWORD !== null
        ? { user: env.DASHBOARD_VIEWER_USER, password: env.DASHBOARD_VIEWER_PASSWORD }
        : null,
    /** Bearer tokens of the HTTP API; `name` is the actor recorded in the event log. */
    apiTokens: env.API_TOKENS,
    http: {
      /**
       * Host names (lower case, optionally with `:port`) accepted in the Host header; null: any.
       * Unset ALLOWED_HOSTS on a loopback HOST means the loopback names only (DNS rebinding).
       */
      allowedHosts:
        env.ALLOWED_HOSTS !== null
          ? env.ALLOWED_HOSTS.includes('*')
            ? null
            : env.ALLOWED_HOSTS
          : isLoopback(env.HOST)
            ? LOOPBACK_NAMES
            : null,
      /** Failed logins per client address per minute before 429s. */
      authFailureLimit: env.AUTH_FAILURE_LIMIT,
      /** Fastify's trustProxy: false, a hop count, or the trusted proxies' addresses. */
      trustProxy: env.TRUST_PROXY,
      /** The request line and headers must arrive within this, ms. */
      headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT,
      /** The whole request (headers and body) must arrive within this, ms. */
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT,
      /** A connection idle this long is closed, ms. */
      idleTimeoutMs: env.HTTP_IDLE_TIMEOUT,
      /** Open connections at most; further ones are closed on accept. */
      maxConnections: env.HTTP_MAX_CONNECTIONS,
    },
  };
}

/** `T` with every property and array read-only, all the way down. */
type DeepReadonly<T> = T extends readonly (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The typed configuration, as toConfig builds it; read-only for the rest of the program. */
export type Config = DeepReadonly<ReturnType<typeof toConfig>>;
/** Twilio (or a Twilio-compatible API). */
export type SmsConfig = NonNullable<Config['sms']>;
export type NotifyConfig = Config['notify'];
export type HttpConfig = Config['http'];
