import {
  addressList,
  apiTokens,
  bool,
  dbTimeout,
  durationList,
  enforcementMode,
  holidayList,
  hostList,
  intInRange,
  logLevel,
  mailbox,
  minorUnits,
  minorUnitsOrNone,
  nonEmptyText,
  pattern,
  password,
  phoneList,
  planScanIntervalSetting,
  planThresholds,
  port,
  positiveDuration,
  positiveDurationOrNone,
  productList,
  quietHours,
  rateOrOff,
  reminderPeriod,
  scanIntervalSetting,
  suspensionBreaker,
  trustProxy,
  url,
  userName,
  type Parsed,
} from './parsers';

/**
 * The table of settings: every environment variable this program reads, once, with its parser,
 * its default (`fallback`), its section and comment in .env.example and whether its value is
 * secret. The zod schema (schema.ts), .env.example (renderEnvExample) and the masking lists
 * (mask.ts) are derived from it.
 */

/** A heading of .env.example and the comment lines under it. */
export interface Section {
  readonly title: string;
  readonly intro: readonly string[];
}

/**
 * What a setting's table entry says besides its parser: its section and comment in
 * .env.example, and whether its value is secret (`value`: the whole value; `url`: a URL whose
 * password part is masked). .env.example is rendered from this table (renderEnvExample), and a
 * test keeps the file current.
 */
export interface SettingMeta {
  readonly section: Section;
  readonly doc: readonly string[];
  readonly secret?: 'value' | 'url';
}

/**
 * What an entry says itself: its comment (lines of a template literal, each trimmed; none for a
 * setting documented with the one before it) and its secret kind. Its section comes from the
 * `section` it is written in.
 */
interface EntryMeta {
  readonly doc?: string;
  readonly secret?: 'value' | 'url';
}

/** The comment lines of an entry's `doc`. */
function docLines(doc: string | undefined): readonly string[] {
  return doc === undefined ? [] : doc.split('\n').map((line) => line.trim());
}

/** A setting with a default (`fallback`, written as `NAME=fallback` in .env.example). */
function required<T>(parse: (raw: string) => Parsed<T>, fallback: string, meta: EntryMeta = {}) {
  return { ...meta, doc: docLines(meta.doc), parse, fallback, example: null };
}

/** A setting without a default (null when unset; `# NAME=example` in .env.example). */
function optional<T>(parse: (raw: string) => Parsed<T>, meta: EntryMeta & { example: string }) {
  return { ...meta, doc: docLines(meta.doc), parse, fallback: null };
}

/** The settings of one section of .env.example, in order, each told its section. */
function section<E extends Record<string, object>>(
  title: string,
  intro: readonly string[],
  entries: E,
): { [K in keyof E]: E[K] & { readonly section: Section } } {
  const heading: Section = { title, intro };
  return Object.fromEntries(
    Object.entries(entries).map(([name, entry]) => [name, { ...entry, section: heading }]),
  ) as { [K in keyof E]: E[K] & { readonly section: Section } };
}

const HEX32 = '[0-9a-fA-F]{32}';

export const ENV_EXAMPLE_HEADER: readonly string[] = [
  'overdue-worker configuration. Every setting is optional unless noted; the value shown is the',
  'default. Values are trimmed and an empty value means "use the default". A bad value stops the',
  'daemon at start with exit code 1 and a list of every bad setting by name (values are never',
  'printed, so secrets stay out of the output).',
  '',
  'Formats',
  '  duration   one or more <integer><unit> groups, units ms s m h d: 500ms 90s 15m 24h 7d 1h30m',
  '             (no bare numbers, no decimals)',
  "  money      integer minor units of the account's currency: 10000 = 100.00 USD (no decimals)",
];

export const SETTINGS = {
  ...section('Storage', [], {
    DATABASE_URL: optional(url(['postgres:', 'postgresql:']), {
      doc: `PostgreSQL connection URL (postgres:// or postgresql://). Unset: an embedded PGlite database
            under DATA_DIR. The password part is masked in logs.`,
      example: 'postgres://overdue:overdue@127.0.0.1:5432/overdue',
      secret: 'url',
    }),
    DATA_DIR: required(nonEmptyText, './data', {
      doc: `Folder for the embedded database and the message outbox (used when SMTP/Twilio are unset).`,
    }),
  }),
  ...section('Queue', [], {
    REDIS_URL: required(url(['redis:', 'rediss:']), 'redis://127.0.0.1:6379', {
      doc: `Redis for BullMQ (redis:// or rediss://). Must have maxmemory-policy noeviction.`,
      secret: 'url',
    }),
    QUEUE_PREFIX: required(
      pattern(
        /^(?:[A-Za-z0-9_.-]*\{[A-Za-z0-9_.-]+\}[A-Za-z0-9_.-]*|[A-Za-z0-9_.-]+)$/,
        'letters, digits, _ . - with at most one {hash-tag} (e.g. {overdue}), no colons or spaces',
      ),
      '{overdue}',
      {
        doc: `BullMQ key prefix. A {hash-tag} keeps a queue's keys in one Redis Cluster slot. Letters,
              digits, _ . - and at most one {tag}; no colons or spaces.`,
      },
    ),
  }),
  ...section('HTTP (dashboard, health, metrics, API)', [], {
    PORT: required(port, '8080', {
      doc: `0 picks a free port.`,
    }),
    HOST: required(nonEmptyText, '127.0.0.1'),
    DASHBOARD_USER: optional(userName, {
      doc: `Queue dashboard credentials (HTTP Basic). Set both or neither; password at least 12 characters.
            Neither: the dashboard is not mounted (unless DEMO=true).`,
      example: 'operator',
    }),
    DASHBOARD_PASSWORD: optional(password, {
      example: 'change-me-to-something-long',
      secret: 'value',
    }),
    DEMO: required(bool, 'false', {
      doc: `Demo mode (true/false): mounts the dashboard without credentials when none are set. Refused
            with a non-loopback HOST unless DASHBOARD_USER/DASHBOARD_PASSWORD are set.`,
    }),
  }),
  ...section('Email', [], {
    SMTP_URL: optional(url(['smtp:', 'smtps:']), {
      doc: `SMTP server (smtp:// or smtps://, credentials in the URL). Unset: emails are written to the
            outbox folder under DATA_DIR and to the log instead of being sent.`,
      example: 'smtp://127.0.0.1:1025',
      secret: 'url',
    }),
    MAIL_FROM: optional(mailbox, {
      doc: `Sender, 'addr@example.com' or 'Name <addr@example.com>'. Required when SMTP_URL is set;
            otherwise defaults to 'overdue-worker <no-reply@localhost>'.`,
      example: 'Billing <billing@example.com>',
    }),
  }),
  ...section(
    'SMS (Twilio or a Twilio-compatible API)',
    [
      'All unset: SMS are written to the outbox folder and the log. Any set: ACCOUNT_SID, AUTH_TOKEN',
      'and one of FROM / MESSAGING_SERVICE_SID are required.',
    ],
    {
      TWILIO_ACCOUNT_SID: optional(
        pattern(new RegExp(`^AC${HEX32}$`), "a Twilio account SID: 'AC' followed by 32 hex digits"),
        {
          doc: `'AC' followed by 32 hex digits.`,
          example: 'AC00000000000000000000000000000000',
        },
      ),
      TWILIO_AUTH_TOKEN: optional(pattern(/^\S+$/, 'a Twilio auth token without spaces'), {
        doc: `Secret; no spaces.`,
        example: '',
        secret: 'value',
      }),
      TWILIO_FROM: optional(
        pattern(/^\+[1-9]\d{1,14}$/, 'a phone number in E.164 form, e.g. +14155550100'),
        {
          doc: `Sender number in E.164 form.`,
          example: '+14155550100',
        },
      ),
      TWILIO_MESSAGING_SERVICE_SID: optional(
        pattern(
          new RegExp(`^MG${HEX32}$`),
          "a messaging service SID: 'MG' followed by 32 hex digits",
        ),
        {
          doc: `'MG' followed by 32 hex digits; Twilio prefers it over TWILIO_FROM when both are set.`,
          example: '',
        },
      ),
      TWILIO_API_BASE_URL: optional(url(['http:', 'https:']), {
        doc: `Base URL (http/https) of a Twilio-compatible gateway. Unset: Twilio itself.`,
        example: 'http://127.0.0.1:8099',
        secret: 'url',
      }),
    },
  ),
  ...section('Control plane (suspend / resume / release effects)', [], {
    CONTROL_PLANE_URL: optional(url(['http:', 'https:']), {
      doc: `Webhook base URL (http/https) of the cloud's control API. Unset: database-only mode, where the
            services table is the effect.`,
      example: 'https://control.example.com/overdue',
      secret: 'url',
    }),
    CONTROL_PLANE_SECRET: optional(pattern(/^\S{32,}$/, 'at least 32 characters without spaces'), {
      doc: `HMAC key for signing control-plane requests. Required with CONTROL_PLANE_URL (and only with
            it); at least 32 characters, no spaces.`,
      example: '',
      secret: 'value',
    }),
  }),
  ...section('Process', [], {
    LOG_LEVEL: required(logLevel, 'info', {
      doc: `fatal, error, warn, info, debug, trace or silent.`,
    }),
    SHUTDOWN_TIMEOUT: required(positiveDuration, '30s', {
      doc: `On SIGTERM/SIGINT, in-flight work gets this long before the process exits (duration).`,
    }),
    INGEST_STATEMENT_TIMEOUT: required(positiveDuration, '30s', {
      doc: `Each statement of an ingest batch (/v1/ingest/*) is cancelled after this long; the batch then
            answers 503 and stores nothing (duration).`,
    }),
  }),
  ...section('Policy defaults (rule ids refer to the README)', [], {
    SCAN_INTERVAL: required(scanIntervalSetting, '1m', {
      doc: `How often every account is re-evaluated by the balance scan (duration, at least 2s; an edit
            of its scheduler in the dashboard is held to the same rule).`,
    }),
    SCAN_RECHECK_INTERVAL: required(positiveDuration, '10m', {
      doc: `An account already in enforcement (suspended, protected, overdue) that was evaluated less than
            this ago, with no bill fallen due since, is skipped by the periodic scan (payments reach it at
            once through the database triggers; timers cover protection ends and releases). Start-up,
            listener reconnects and operator-triggered scans read every account (duration).`,
    }),
    PLAN_SCAN_INTERVAL: required(planScanIntervalSetting, '15m', {
      doc: `How often plan quotas and expiries are scanned (duration, at least 10s).`,
    }),
    RETENTION_OUTBOX: required(positiveDuration, '7d', {
      doc: `Retention, pruned hourly in small batches (durations): finished outbox rows (done, failed,
            superseded) after RETENTION_OUTBOX since their last change; notifications in a final status
            (sent, delivered, failed, undeliverable, superseded) after RETENTION_NOTIFICATIONS since
            their last change; enforcement events (the audit trail) and the breaker's decided ledger
            rows after RETENTION_EVENTS.`,
    }),
    RETENTION_NOTIFICATIONS: required(positiveDuration, '90d'),
    RETENTION_EVENTS: required(positiveDuration, '400d'),
    SCAN_PAGE_SIZE: required(intInRange(10, 50_000), '2000', {
      doc: `Accounts read per keyset page of a scan (10..50000).`,
    }),
    DB_POOL_SIZE: required(intInRange(2, 500), '16', {
      doc: `PostgreSQL connections of one daemon (2..500), plus one for LISTEN. Evaluations, effects,
            senders and the relay share them, and each of those works in batches (one statement for many
            rows), so few connections are busy at once: the default lets three daemons and a benchmark
            share a server's default max_connections of 100 (3 x 17 + the rest). Behind PgBouncer in
            transaction mode, set DB_PREPARE=false.`,
    }),
    DB_PREPARE: required(bool, 'true', {
      doc: `Use named prepared statements (true: each statement text is parsed once per connection). Set
            false behind a pooler in transaction mode (PgBouncer), which cannot keep them per client.`,
    }),
    DB_STATEMENT_TIMEOUT: required(dbTimeout, '60s', {
      doc: `Longest a single SQL statement may run, lock waits included ('none' or a duration up to 24h):
            the server cancels it (the job fails and is retried). Each scan page is one short statement;
            migrations run on a connection of their own with a 1 h limit. A connection that owes answers
            and stays silent this long plus 30 s is taken for dead on the client side (a half-open TCP
            connection) and its queries fail; with 'none' there is no such limit either.`,
    }),
    DB_IDLE_IN_TRANSACTION_TIMEOUT: required(dbTimeout, '60s', {
      doc: `Longest a transaction may wait for its next statement ('none' or a duration up to 24h): the
            server then ends the session, rolls the transaction back and releases its locks. The daemon
            makes no network call inside a transaction, so this only fires on a stuck process.`,
    }),
    EVALUATE_CONCURRENCY: required(intInRange(1, 256), '32', {
      doc: `Evaluation jobs one daemon runs at once (1..256). Single-account jobs in flight together
            (payments, timers, operators) are evaluated together, one transaction per batch.`,
    }),
    EVALUATE_BATCH_SIZE: required(intInRange(1, 1_000), '200', {
      doc: `Accounts per evaluation transaction (1..1000): a scan enqueues one job per this many
            candidates, and single-account jobs are grouped up to this many. Their rows stay locked for
            the transaction, so a payment on one of them waits for at most one batch.`,
    }),
    EFFECTS_CONCURRENCY: required(intInRange(1, 256), '64', {
      doc: `Control-plane effects (suspend, resume, release) one daemon runs at once (1..256), and the
            most keep-alive connections it holds to the control plane. Their claims and their outcomes
            are coalesced into one statement per batch, so this costs few database connections; the
            throughput is about concurrency ÷ the control plane's answer time.`,
    }),
    OUTBOX_POLL_INTERVAL: required(positiveDuration, '1s', {
      doc: `Safety-net poll of the outbox; the relay also runs right after every evaluation (duration).`,
    }),
    CONTROL_PLANE_TIMEOUT: required(positiveDuration, '5s', {
      doc: `Deadline of one control-plane request (duration); a timeout is retried with the same key.`,
    }),
    NOTIFY_CONCURRENCY: required(intInRange(1, 256), '64', {
      doc: `Notification jobs one daemon runs at once, per channel (1..256); also the SMTP connections
            it keeps open. 2 × 64 in flight carry 1,000 messages/s while a message takes up to 128 ms.`,
    }),
    NOTIFY_TIMEOUT: required(positiveDuration, '10s', {
      doc: `Deadline of one provider call (an SMTP transaction or a Twilio request) (duration). A timeout
            is retried; an SMS is first looked up at the provider so it is never sent twice.`,
    }),
    NOTIFY_GIVE_UP_AFTER: required(positiveDuration, '24h', {
      doc: `A message that keeps failing transiently (provider down, 429, 5xx) is retried with backoff, at
            least every 2 minutes, until it is this old; then it fails and falls back to the other channel.`,
    }),
    EMAIL_RATE_LIMIT: required(rateOrOff, '50', {
      doc: `Emails / SMS per second across all daemons (1..10000, or 'off'), held by the queue's limiter.`,
    }),
    SMS_RATE_LIMIT: required(rateOrOff, '10'),
    SMS_STATUS_CALLBACK_URL: optional(url(['http:', 'https:']), {
      doc: `Public URL at which Twilio reaches POST /v1/callbacks/sms; sent as the StatusCallback and used
            to check X-Twilio-Signature. Unset: no delivery tracking (callbacks are refused).`,
      example: 'https://overdue.example.com/v1/callbacks/sms',
      secret: 'url',
    }),
    TOP_UP_URL: optional(url(['http:', 'https:']), {
      doc: `Where customers top up or pay, shown in notices. Unset: notices say "in the console".`,
      example: 'https://console.example.com/billing/top-up',
      secret: 'url',
    }),
    DKIM_DOMAIN: optional(pattern(/^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, 'a domain name'), {
      doc: `DKIM signing of outgoing email: set all three or none (the key file is PEM, read at start).`,
      example: 'example.com',
    }),
    DKIM_SELECTOR: optional(pattern(/^[A-Za-z0-9._-]+$/, 'a DKIM selector'), {
      example: 'overdue',
    }),
    DKIM_PRIVATE_KEY_FILE: optional(nonEmptyText, {
      example: '/run/secrets/dkim.pem',
    }),
    OPERATOR_EMAILS: required(addressList, '', {
      doc: `Operator alerts (failing jobs or providers, late schedulers): comma lists of addresses and
            E.164 numbers; empty: alerts only go to the log.`,
    }),
    OPERATOR_PHONES: required(phoneList, ''),
    OPERATOR_ALERT_INTERVAL: required(positiveDuration, '15m', {
      doc: `At most one operator alert per kind of problem per interval (duration).`,
    }),
    LOW_BALANCE_REMINDER_INTERVAL: required(reminderPeriod, 'local-day', {
      doc: `R3: repeat low-balance reminders at most once per local calendar day ('local-day') or once per
            fixed window (a duration, windows aligned to the Unix epoch).`,
    }),
    OVERDUE_REMINDER_INTERVAL: required(reminderPeriod, 'local-day', {
      doc: `R4: same, for overdue reminders during protection.`,
    }),
    LOW_BALANCE_THRESHOLD_MINOR: required(minorUnits, '10000', {
      doc: `R3: low-balance threshold (money) for accounts that set none.`,
    }),
    PROTECTION_AMOUNT_MINOR: required(minorUnitsOrNone, '5000', {
      doc: `R4: default protection quota for accounts that set none. Protected while the overdue amount
            is at most PROTECTION_AMOUNT_MINOR (money, or 'none' for no amount limit) and, if set, at most
            PROTECTION_DURATION (duration, or 'none') has passed since the overdue episode started.
            Exceeding either limit ends protection; both 'none' means no protection at all.`,
    }),
    PROTECTION_DURATION: required(positiveDurationOrNone, 'none'),
    LIVE_PRODUCTS: required(productList, 'live', {
      doc: `R6: bill product codes that are this cloud's live video (comma list); other products' unpaid
            bills still count towards the quota and are named as the cause.`,
    }),
    STUDIO_RELEASE_DELAY: required(positiveDuration, '24h', {
      doc: `R9: a studio instance suspended for overdue is released this long after its suspension.`,
    }),
    STUDIO_RELEASE_WARNING: required(positiveDuration, '2h', {
      doc: `R9: warning sent this long before the release; must be shorter than STUDIO_RELEASE_DELAY.`,
    }),
    QUIET_HOURS: required(quietHours, '22:00-08:00', {
      doc: `SMS quiet hours in the account's local time, 'HH:MM-HH:MM' (may wrap midnight; start
            inclusive, end exclusive), or 'off'. SMS due inside the window wait for its end.`,
    }),
    PLAN_ALERT_THRESHOLDS: required(planThresholds, '20%,5%', {
      doc: `R10: plan quota alert thresholds (comma list): N% of the plan total remaining (0 < N <= 100,
            decimals allowed), or absolute remaining units as a positive integer (500); 'none' disables.`,
    }),
    PLAN_EXPIRY_REMINDERS: required(durationList, '7d,1d', {
      doc: `R10: remind this long before a plan expires (comma list of durations, or 'none').`,
    }),
    REVERT_NOTICE_WINDOW: required(positiveDuration, '7d', {
      doc: `R1: a revert-to-pay-as-you-go notice is sent for plans that ended at most this long ago.`,
    }),
    HOLIDAYS: required(holidayList, '', {
      doc: `R11: holidays skipped when counting refund business days (comma list of YYYY-MM-DD dates,
            in addition to Saturdays and Sundays).`,
    }),
  }),
  ...section('HTTP API and dashboard access', [], {
    METRICS_PUBLIC: required(bool, 'false', {
      doc: `/metrics without credentials (true/false); otherwise it needs the dashboard credentials or an
            API token.`,
    }),
    DASHBOARD_VIEWER_USER: optional(userName, {
      doc: `Optional read-only account for the dashboard and the API's GET routes (HTTP Basic). Set both
            or neither; must differ from DASHBOARD_USER; password at least 12 characters.`,
      example: 'viewer',
    }),
    DASHBOARD_VIEWER_PASSWORD: optional(password, {
      example: 'another-long-password',
      secret: 'value',
    }),
    API_TOKENS: required(apiTokens, '', {
      doc: `Bearer tokens of the HTTP API: comma list of name:scope:token, token at least 32 characters.
            Scopes: ingest (only /v1/ingest/*, for the billing system), read (GET routes and /metrics),
            operator (everything). The older form name=token still works and is operator scope. The name
            is recorded as the actor of its actions. Example: billing:ingest:<32+ characters>`,
      secret: 'value',
    }),
    ALLOWED_HOSTS: optional(hostList, {
      doc: `Host names the HTTP server answers to (Host header; comma list, optionally name:port), or '*'
            for any. Unset: on a loopback HOST only localhost, 127.0.0.1 and [::1] (a page on another
            site cannot reach the daemon through DNS rebinding); on another HOST any host. Other hosts
            get 421.`,
      example: 'worker.example.com',
    }),
    AUTH_FAILURE_LIMIT: required(intInRange(1, 10_000), '10', {
      doc: `Failed logins (wrong Basic password or unknown token) one client address may make per minute;
            beyond that it gets 429 with Retry-After until the minute is over.`,
    }),
    TRUST_PROXY: required(trustProxy, 'off', {
      doc: `Behind a reverse proxy: the proxies whose X-Forwarded-For names the client (comma list of
            addresses or CIDR blocks, or a hop count 1..10). off: the connection's peer is the client.
            Without it, every client behind a proxy shares the proxy's address, and one client's
            failed logins throttle them all. Example: 10.0.0.5,10.1.0.0/16.`,
    }),
    HTTP_HEADERS_TIMEOUT: required(positiveDuration, '10s', {
      doc: `The request line and headers must arrive within this (duration); slower clients are cut off.`,
    }),
    HTTP_REQUEST_TIMEOUT: required(positiveDuration, '30s', {
      doc: `The whole request, body included, must arrive within this (duration).`,
    }),
    HTTP_IDLE_TIMEOUT: required(positiveDuration, '60s', {
      doc: `A connection with no traffic for this long is closed (duration).`,
    }),
    HTTP_MAX_CONNECTIONS: required(intInRange(1, 100_000), '256', {
      doc: `Open HTTP connections at most; connections beyond it are closed when accepted.`,
    }),
  }),
  ...section('Safety valves', [], {
    ENFORCEMENT_MODE: required(enforcementMode, 'enforce', {
      doc: `enforce: act. shadow: decide and record what would be done (shadow events, shadow-report),
            with no state change, no control-plane call and no message. off: no scan, no evaluation.
            Written at each daemon start unless an operator has set the mode at run time since (the
            operator's choice stands; POST /v1/enforcement-mode, \`overdue-worker mode\`).`,
    }),
    SUSPENSION_BREAKER: required(suspensionBreaker, '100/10m,1%', {
      doc: `Mass-suspension breaker: <count>/<window>[,<share>%], or off. When more suspensions are
            decided within the sliding window than the larger of the count and the share of the
            accounts in good standing, the breaker trips: further suspensions and every studio
            release are held until an operator approves or rejects them (GET /v1/breaker,
            \`overdue-worker breaker\`), and the operators are alerted once. Written at each daemon
            start.`,
    }),
  }),
};

export type SettingTable = typeof SETTINGS;
export type SettingName = keyof SettingTable;
