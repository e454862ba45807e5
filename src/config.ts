import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import type {
  PlanThreshold,
  ProtectionQuota,
  QuietHours,
  ReminderPeriod,
  RuleSettings,
} from './domain/rules';

/**
 * The whole environment, parsed once at start by one zod schema. Nothing else in the project reads
 * `process.env`: main.ts calls `parseConfigOrExit(process.env)` and passes the typed result down.
 *
 * Conventions:
 * - Values are trimmed; an empty value counts as unset (so `FOO=` in a .env file means "default").
 * - Durations are one or more `<integer><unit>` groups, units ms, s, m, h, d: `500ms`, `90s`,
 *   `15m`, `24h`, `7d`, `1h30m`. No bare numbers (is `30` seconds or ms?), no decimals, no signs.
 * - Money is an integer count of minor units of the account's currency (`10000` = 100.00 USD).
 * - Error messages name the setting and the expected format and never echo the value, so a
 *   secret (or a URL carrying a password) cannot leak through them; as a second line of defence
 *   every secret found in the input is scrubbed from the messages before they are returned.
 */

// ---------------------------------------------------------------------------------------------
// Small parsers. Each returns the parsed value or an `Invalid` carrying a message without the value.

/** What a masked secret looks like in messages and logs. */
export const REDACTED = '[redacted]';

class Invalid {
  constructor(readonly message: string) {}
}
type Parsed<T> = T | Invalid;

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;
const DURATION_PART = /(\d+)(ms|s|m|h|d)/g;
const DURATION_HINT = 'a duration like 500ms, 90s, 15m, 24h, 7d or 1h30m';

/** Milliseconds of a duration such as `90s` or `1h30m`; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) {
    total += Number(amount) * (DURATION_UNITS_MS[unit ?? ''] ?? Number.NaN);
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

function positiveDuration(raw: string): Parsed<number> {
  const ms = parseDuration(raw);
  if (ms === undefined) return new Invalid(`must be ${DURATION_HINT}`);
  if (ms <= 0) return new Invalid('must be a duration greater than zero');
  return ms;
}

function reminderPeriod(raw: string): Parsed<ReminderPeriod> {
  if (raw === 'local-day') return { kind: 'local-day' };
  const ms = positiveDuration(raw);
  if (ms instanceof Invalid) {
    return new Invalid(`must be 'local-day' (once per local calendar day) or ${DURATION_HINT}`);
  }
  return { kind: 'every', ms };
}

/** A non-negative integer of minor units; decimals are refused rather than rounded. */
function minorUnits(raw: string): Parsed<number> {
  if (/^\d+[.,]\d*$/.test(raw)) {
    return new Invalid('must be an integer of minor units without decimals (10000 = 100.00)');
  }
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    return new Invalid('must be a non-negative integer of minor units (10000 = 100.00)');
  }
  return Number(raw);
}

function minorUnitsOrNone(raw: string): Parsed<number | null> {
  return raw === 'none' ? null : minorUnits(raw);
}

function positiveDurationOrNone(raw: string): Parsed<number | null> {
  return raw === 'none' ? null : positiveDuration(raw);
}

/** A PostgreSQL timeout setting: 'none', or a duration up to 24h (the server takes ms in an int). */
function dbTimeout(raw: string): Parsed<number | null> {
  const ms = positiveDurationOrNone(raw);
  if (ms instanceof Invalid) return new Invalid(`must be 'none' or ${DURATION_HINT}`);
  if (ms !== null && ms > 86_400_000) return new Invalid('must be at most 24h');
  return ms;
}

function port(raw: string): Parsed<number> {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65_535) return new Invalid('must be an integer from 0 to 65535');
  return n;
}

function intInRange(min: number, max: number): (raw: string) => Parsed<number> {
  return (raw) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      return new Invalid(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function url(protocols: readonly string[]): (raw: string) => Parsed<string> {
  const expected = protocols.map((p) => `${p}//`).join(' or ');
  return (raw) => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      return new Invalid(`must be a ${expected} URL`);
    }
    if (!protocols.includes(parsed.protocol) || parsed.hostname === '') {
      return new Invalid(`must be a ${expected} URL with a host`);
    }
    return raw;
  };
}

function nonEmptyText(raw: string): Parsed<string> {
  return raw.length > 0 ? raw : new Invalid('must not be empty');
}

const ADDRESS = /^[^\s@<>]+@[^\s@<>]+$/;
/** `user@example.com` or `Display Name <user@example.com>`. */
function mailbox(raw: string): Parsed<string> {
  const named = /^[^<>]*<([^<>]+)>$/.exec(raw);
  const address = named ? named[1] : raw;
  if (address === undefined || !ADDRESS.test(address)) {
    return new Invalid(
      "must be an address like 'billing@example.com' or 'Billing <billing@example.com>'",
    );
  }
  return raw;
}

function pattern(re: RegExp, description: string): (raw: string) => Parsed<string> {
  return (raw) => (re.test(raw) ? raw : new Invalid(`must be ${description}`));
}

/** Messages per second for a channel (1..10000), or `off` for no limit. */
function rateOrOff(raw: string): Parsed<number | null> {
  if (raw === 'off') return null;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 10_000) {
    return new Invalid("must be messages per second from 1 to 10000, or 'off'");
  }
  return n;
}

/** Comma list of plain email addresses (may be empty). */
function addressList(raw: string): Parsed<string[]> {
  const items = listItems(raw);
  if (!items.every((item) => ADDRESS.test(item))) {
    return new Invalid('must be a comma list of addresses like ops@example.com');
  }
  return [...new Set(items)];
}

/** Comma list of E.164 phone numbers (may be empty). */
function phoneList(raw: string): Parsed<string[]> {
  const items = listItems(raw);
  if (!items.every((item) => /^\+[1-9]\d{1,14}$/.test(item))) {
    return new Invalid('must be a comma list of phone numbers in E.164 form, e.g. +14155550100');
  }
  return [...new Set(items)];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

function logLevel(raw: string): Parsed<LogLevel> {
  const level = LOG_LEVELS.find((l) => l === raw);
  return level ?? new Invalid(`must be one of ${LOG_LEVELS.join(', ')}`);
}

const ENFORCEMENT_MODES = ['enforce', 'shadow', 'off'] as const;
export type EnforcementModeSetting = (typeof ENFORCEMENT_MODES)[number];

function enforcementMode(raw: string): Parsed<EnforcementModeSetting> {
  const mode = ENFORCEMENT_MODES.find((m) => m === raw);
  return mode ?? new Invalid(`must be one of ${ENFORCEMENT_MODES.join(', ')}`);
}

function bool(raw: string): Parsed<boolean> {
  if (['true', '1', 'yes', 'on'].includes(raw)) return true;
  if (['false', '0', 'no', 'off'].includes(raw)) return false;
  return new Invalid('must be true or false');
}

/** Items of a comma-separated list, trimmed, empty items dropped. */
function listItems(raw: string): string[] {
  return raw
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
}

function productList(raw: string): Parsed<string[]> {
  const items = listItems(raw);
  if (items.length === 0) return new Invalid('must list at least one product code');
  if (!items.every((item) => /^[A-Za-z0-9_.-]+$/.test(item))) {
    return new Invalid('must be product codes (letters, digits, _ . -) separated by commas');
  }
  return [...new Set(items)];
}

/**
 * `22:00-08:00` (a window that may wrap midnight; start inclusive, end exclusive) or `off`.
 * QuietHours counts minutes since local midnight; equal start and end means no quiet hours, which
 * is how `off` is represented.
 */
function quietHours(raw: string): Parsed<QuietHours> {
  if (raw === 'off') return { startMinute: 0, endMinute: 0 };
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/.exec(raw);
  if (!m)
    return new Invalid("must be 'HH:MM-HH:MM' in 24-hour local time (e.g. 22:00-08:00) or 'off'");
  const startMinute = Number(m[1]) * 60 + Number(m[2]);
  const endMinute = Number(m[3]) * 60 + Number(m[4]);
  if (startMinute === endMinute)
    return new Invalid("has equal start and end; use 'off' to disable");
  return { startMinute, endMinute };
}

/** `20%,5%` shares of the plan total, or absolute remaining units like `500`; `none` disables. */
function planThresholds(raw: string): Parsed<PlanThreshold[]> {
  if (raw === 'none') return [];
  const items = listItems(raw);
  const out: PlanThreshold[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const percent = /^(\d{1,3}(?:\.\d+)?)%$/.exec(item);
    let threshold: PlanThreshold;
    if (percent) {
      const value = Number(percent[1]);
      if (!(value > 0 && value <= 100)) {
        return new Invalid('percent thresholds must be greater than 0% and at most 100%');
      }
      threshold = { kind: 'percent', percent: value };
    } else if (/^\d+$/.test(item) && Number.isSafeInteger(Number(item)) && Number(item) > 0) {
      threshold = { kind: 'units', units: Number(item) };
    } else {
      return new Invalid(
        "must be a comma list of percentages of the plan total (20%) or positive whole remaining units (500), or 'none'",
      );
    }
    const key = threshold.kind === 'percent' ? `${threshold.percent}%` : `${threshold.units}`;
    if (!seen.has(key)) out.push(threshold);
    seen.add(key);
  }
  if (out.length === 0) return new Invalid("must list at least one threshold, or be 'none'");
  return out;
}

/** `7d,1d`: how long before expiry to remind; `none` disables. Sorted longest first, deduped. */
function durationList(raw: string): Parsed<number[]> {
  if (raw === 'none') return [];
  const items = listItems(raw);
  const out: number[] = [];
  for (const item of items) {
    const ms = positiveDuration(item);
    if (ms instanceof Invalid)
      return new Invalid(`must be a comma list of ${DURATION_HINT}, or 'none'`);
    out.push(ms);
  }
  if (out.length === 0) return new Invalid("must list at least one duration, or be 'none'");
  return [...new Set(out)].sort((a, b) => b - a);
}

/** Comma list of calendar dates `YYYY-MM-DD`, sorted and deduped. */
function holidayList(raw: string): Parsed<string[]> {
  const items = listItems(raw);
  for (const item of items) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(item);
    const date = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
    if (!date || date.toISOString().slice(0, 10) !== item) {
      return new Invalid('must be a comma list of calendar dates like 2025-12-25');
    }
  }
  return [...new Set(items)].sort();
}

/** What an API token may do (src/http/auth.ts). */
export const TOKEN_SCOPES = ['ingest', 'read', 'operator'] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

export interface ApiToken {
  readonly name: string;
  readonly scope: TokenScope;
  readonly token: string;
}

/**
 * Bearer tokens of the HTTP API, a comma list of `name:scope:token` (scope: ingest, read or
 * operator) or the older `name=token`, which is operator scope. The name (letters, digits,
 * _ . -) is who the event log records; each token is at least 32 characters without spaces or
 * commas. Names and tokens must be unique.
 */
function apiTokens(raw: string): Parsed<ApiToken[]> {
  const out: ApiToken[] = [];
  for (const item of listItems(raw)) {
    const scoped = /^([A-Za-z0-9_.-]{1,40}):([a-z]+):([^\s,]{32,})$/.exec(item);
    const legacy = /^([A-Za-z0-9_.-]{1,40})=([^\s,]{32,})$/.exec(item);
    if (scoped?.[1] && scoped[2] && scoped[3]) {
      const scope = TOKEN_SCOPES.find((s) => s === scoped[2]);
      if (scope === undefined) {
        return new Invalid(`has a token scope that is not one of ${TOKEN_SCOPES.join(', ')}`);
      }
      out.push({ name: scoped[1], scope, token: scoped[3] });
    } else if (legacy?.[1] && legacy[2]) {
      out.push({ name: legacy[1], scope: 'operator', token: legacy[2] });
    } else {
      return new Invalid(
        `must be a comma list of name:scope:token (scope: ${TOKEN_SCOPES.join(', ')}) or name=token (operator scope); name: letters, digits, _ . -; token: at least 32 characters without spaces`,
      );
    }
  }
  if (new Set(out.map((t) => t.name)).size !== out.length) {
    return new Invalid('must not repeat a token name');
  }
  if (new Set(out.map((t) => t.token)).size !== out.length) {
    return new Invalid('must not repeat a token');
  }
  return out;
}

/** A duration of at least `minMs` (a scan every second would keep the database busy). */
function durationAtLeast(minMs: number, minText: string): (raw: string) => Parsed<number> {
  return (raw) => {
    const ms = positiveDuration(raw);
    if (ms instanceof Invalid) return ms;
    return ms < minMs ? new Invalid(`must be at least ${minText}`) : ms;
  };
}

/**
 * Minimum of SCAN_INTERVAL (and of an edit of its scheduler in the dashboard), ms. Low enough
 * for the fault tests' short cycles; a scan every second or faster is refused.
 */
export const SCAN_INTERVAL_MIN_MS = 2_000;
/** Minimum of PLAN_SCAN_INTERVAL (and of an edit of its scheduler), ms; the demo uses 30s. */
export const PLAN_SCAN_INTERVAL_MIN_MS = 10_000;
export const scanIntervalSetting = durationAtLeast(SCAN_INTERVAL_MIN_MS, '2s');
export const planScanIntervalSetting = durationAtLeast(PLAN_SCAN_INTERVAL_MIN_MS, '10s');

/**
 * Host names (optionally `name:port`) the HTTP server answers to, `*` for any. Matched against
 * the request's Host header, case-insensitively.
 */
function hostList(raw: string): Parsed<string[]> {
  if (raw === '*') return ['*'];
  const items = listItems(raw).map((h) => h.toLowerCase());
  if (items.length === 0) return new Invalid("must list at least one host name, or be '*'");
  if (!items.every((h) => /^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/.test(h))) {
    return new Invalid(
      "must be a comma list of host names like worker.example.com or localhost:8080, or '*'",
    );
  }
  return [...new Set(items)];
}

// ---------------------------------------------------------------------------------------------
// The schema. Every field is an optional string in the environment; a helper turns a parser into
// a zod schema that reports a custom issue (with our own, value-free message) on failure.

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

const HEX32 = '[0-9a-fA-F]{32}';

/** Settings that are null when unset (no default). */
type NullableKey = {
  [K in Key]: null extends Env[K] ? K : never;
}[Key];
type Key = keyof typeof fields;

/**
 * What a setting's table entry says besides its parser: its section and comment in
 * .env.example, and whether its value is secret (`value`: the whole value; `url`: a URL whose
 * password part is masked). .env.example is rendered from this table (renderEnvExample), and a
 * test keeps the file current.
 */
interface SettingMeta {
  readonly section: string;
  readonly doc: readonly string[];
  readonly secret?: 'value' | 'url';
}

/** A setting with a default (`fallback`, written as `NAME=fallback` in .env.example). */
function required<T>(parse: (raw: string) => Parsed<T>, fallback: string, meta: SettingMeta) {
  return { ...meta, schema: setting(parse, fallback), fallback, example: null };
}

/** A setting without a default (null when unset; `# NAME=example` in .env.example). */
function optional<T>(parse: (raw: string) => Parsed<T>, meta: SettingMeta & { example: string }) {
  return { ...meta, schema: optionalSetting(parse), fallback: null };
}

const ENV_EXAMPLE_HEADER: readonly string[] = [
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

const SECTIONS: Readonly<Record<string, readonly string[]>> = {
  Storage: [],
  Queue: [],
  'HTTP (dashboard, health, metrics, API)': [],
  Email: [],
  'SMS (Twilio or a Twilio-compatible API)': [
    'All unset: SMS are written to the outbox folder and the log. Any set: ACCOUNT_SID, AUTH_TOKEN',
    'and one of FROM / MESSAGING_SERVICE_SID are required.',
  ],
  'Control plane (suspend / resume / release effects)': [],
  Process: [],
  'Policy defaults (rule ids refer to the README)': [],
  'HTTP API and dashboard access': [],
  'Safety valves': [],
};

const SETTINGS = {
  DATABASE_URL: optional(url(['postgres:', 'postgresql:']), {
    section: 'Storage',
    doc: [
      'PostgreSQL connection URL (postgres:// or postgresql://). Unset: an embedded PGlite database',
      'under DATA_DIR. The password part is masked in logs.',
    ],
    example: 'postgres://overdue:overdue@127.0.0.1:5432/overdue',
    secret: 'url',
  }),
  DATA_DIR: required(nonEmptyText, './data', {
    section: 'Storage',
    doc: [
      'Folder for the embedded database and the message outbox (used when SMTP/Twilio are unset).',
    ],
  }),
  REDIS_URL: required(url(['redis:', 'rediss:']), 'redis://127.0.0.1:6379', {
    section: 'Queue',
    doc: ['Redis for BullMQ (redis:// or rediss://). Must have maxmemory-policy noeviction.'],
    secret: 'url',
  }),
  QUEUE_PREFIX: required(
    pattern(
      /^(?:[A-Za-z0-9_.-]*\{[A-Za-z0-9_.-]+\}[A-Za-z0-9_.-]*|[A-Za-z0-9_.-]+)$/,
      'letters, digits, _ . - with at most one {hash-tag} (e.g. {overdue}), no colons or spaces',
    ),
    '{overdue}',
    {
      section: 'Queue',
      doc: [
        "BullMQ key prefix. A {hash-tag} keeps a queue's keys in one Redis Cluster slot. Letters,",
        'digits, _ . - and at most one {tag}; no colons or spaces.',
      ],
    },
  ),
  PORT: required(port, '8080', {
    section: 'HTTP (dashboard, health, metrics, API)',
    doc: ['0 picks a free port.'],
  }),
  HOST: required(nonEmptyText, '127.0.0.1', {
    section: 'HTTP (dashboard, health, metrics, API)',
    doc: [],
  }),
  DASHBOARD_USER: optional(pattern(/^[^\s:]+$/, 'a user name without spaces or colons'), {
    section: 'HTTP (dashboard, health, metrics, API)',
    doc: [
      'Queue dashboard credentials (HTTP Basic). Set both or neither; password at least 12 characters.',
      'Neither: the dashboard is not mounted (unless DEMO=true).',
    ],
    example: 'operator',
  }),
  DASHBOARD_PASSWORD: optional(pattern(/^.{12,}$/s, 'at least 12 characters long'), {
    section: 'HTTP (dashboard, health, metrics, API)',
    doc: [],
    example: 'change-me-to-something-long',
    secret: 'value',
  }),
  DEMO: required(bool, 'false', {
    section: 'HTTP (dashboard, health, metrics, API)',
    doc: [
      'Demo mode (true/false): mounts the dashboard without credentials when none are set. Refused',
      'with a non-loopback HOST unless DASHBOARD_USER/DASHBOARD_PASSWORD are set.',
    ],
  }),
  SMTP_URL: optional(url(['smtp:', 'smtps:']), {
    section: 'Email',
    doc: [
      'SMTP server (smtp:// or smtps://, credentials in the URL). Unset: emails are written to the',
      'outbox folder under DATA_DIR and to the log instead of being sent.',
    ],
    example: 'smtp://127.0.0.1:1025',
    secret: 'url',
  }),
  MAIL_FROM: optional(mailbox, {
    section: 'Email',
    doc: [
      "Sender, 'addr@example.com' or 'Name <addr@example.com>'. Required when SMTP_URL is set;",
      "otherwise defaults to 'overdue-worker <no-reply@localhost>'.",
    ],
    example: 'Billing <billing@example.com>',
  }),
  TWILIO_ACCOUNT_SID: optional(
    pattern(new RegExp(`^AC${HEX32}$`), "a Twilio account SID: 'AC' followed by 32 hex digits"),
    {
      section: 'SMS (Twilio or a Twilio-compatible API)',
      doc: ["'AC' followed by 32 hex digits."],
      example: 'AC00000000000000000000000000000000',
    },
  ),
  TWILIO_AUTH_TOKEN: optional(pattern(/^\S+$/, 'a Twilio auth token without spaces'), {
    section: 'SMS (Twilio or a Twilio-compatible API)',
    doc: ['Secret; no spaces.'],
    example: '',
    secret: 'value',
  }),
  TWILIO_FROM: optional(
    pattern(/^\+[1-9]\d{1,14}$/, 'a phone number in E.164 form, e.g. +14155550100'),
    {
      section: 'SMS (Twilio or a Twilio-compatible API)',
      doc: ['Sender number in E.164 form.'],
      example: '+14155550100',
    },
  ),
  TWILIO_MESSAGING_SERVICE_SID: optional(
    pattern(new RegExp(`^MG${HEX32}$`), "a messaging service SID: 'MG' followed by 32 hex digits"),
    {
      section: 'SMS (Twilio or a Twilio-compatible API)',
      doc: [
        "'MG' followed by 32 hex digits; Twilio prefers it over TWILIO_FROM when both are set.",
      ],
      example: '',
    },
  ),
  TWILIO_API_BASE_URL: optional(url(['http:', 'https:']), {
    section: 'SMS (Twilio or a Twilio-compatible API)',
    doc: ['Base URL (http/https) of a Twilio-compatible gateway. Unset: Twilio itself.'],
    example: 'http://127.0.0.1:8099',
    secret: 'url',
  }),
  CONTROL_PLANE_URL: optional(url(['http:', 'https:']), {
    section: 'Control plane (suspend / resume / release effects)',
    doc: [
      "Webhook base URL (http/https) of the cloud's control API. Unset: database-only mode, where the",
      'services table is the effect.',
    ],
    example: 'https://control.example.com/overdue',
    secret: 'url',
  }),
  CONTROL_PLANE_SECRET: optional(pattern(/^\S{32,}$/, 'at least 32 characters without spaces'), {
    section: 'Control plane (suspend / resume / release effects)',
    doc: [
      'HMAC key for signing control-plane requests. Required with CONTROL_PLANE_URL (and only with',
      'it); at least 32 characters, no spaces.',
    ],
    example: '',
    secret: 'value',
  }),
  ENFORCEMENT_MODE: required(enforcementMode, 'enforce', {
    section: 'Safety valves',
    doc: [
      'enforce: act. shadow: decide and record what would be done (shadow events, shadow-report),',
      'with no state change, no control-plane call and no message. off: no scan, no evaluation.',
      'Written at each daemon start unless an operator has set the mode at run time since (the',
      "operator's choice stands; PUT /v1/enforcement-mode, `overdue-worker mode`).",
    ],
  }),
  LOG_LEVEL: required(logLevel, 'info', {
    section: 'Process',
    doc: ['fatal, error, warn, info, debug, trace or silent.'],
  }),
  SHUTDOWN_TIMEOUT: required(positiveDuration, '30s', {
    section: 'Process',
    doc: ['On SIGTERM/SIGINT, in-flight work gets this long before the process exits (duration).'],
  }),
  INGEST_STATEMENT_TIMEOUT: required(positiveDuration, '30s', {
    section: 'Process',
    doc: [
      'Each statement of an ingest batch (/v1/ingest/*) is cancelled after this long; the batch then',
      'answers 503 and stores nothing (duration).',
    ],
  }),
  SCAN_INTERVAL: required(scanIntervalSetting, '1m', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'How often every account is re-evaluated by the balance scan (duration, at least 2s; an edit',
      'of its scheduler in the dashboard is held to the same rule).',
    ],
  }),
  SCAN_RECHECK_INTERVAL: required(positiveDuration, '10m', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'An account already in enforcement (suspended, protected, overdue) that was evaluated less than',
      'this ago, with no bill fallen due since, is skipped by the periodic scan (payments reach it at',
      'once through the database triggers; timers cover protection ends and releases). Start-up,',
      'listener reconnects and operator-triggered scans read every account (duration).',
    ],
  }),
  PLAN_SCAN_INTERVAL: required(planScanIntervalSetting, '15m', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ['How often plan quotas and expiries are scanned (duration, at least 10s).'],
  }),
  RETENTION_OUTBOX: required(positiveDuration, '7d', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Retention, pruned hourly in small batches (durations): finished outbox rows (done, failed,',
      'superseded) after RETENTION_OUTBOX since their last change; notifications in a final status',
      '(sent, delivered, failed, undeliverable, superseded) after RETENTION_NOTIFICATIONS since',
      'their last change; enforcement events (the audit trail) after RETENTION_EVENTS.',
    ],
  }),
  RETENTION_NOTIFICATIONS: required(positiveDuration, '90d', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
  }),
  RETENTION_EVENTS: required(positiveDuration, '400d', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
  }),
  SCAN_PAGE_SIZE: required(intInRange(10, 50_000), '2000', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ['Accounts read per keyset page of a scan (10..50000).'],
  }),
  DB_POOL_SIZE: required(intInRange(2, 500), '16', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'PostgreSQL connections of one daemon (2..500), plus one for LISTEN. Evaluations, effects,',
      'senders and the relay share them, and each of those works in batches (one statement for many',
      'rows), so few connections are busy at once: the default lets three daemons and a benchmark',
      "share a server's default max_connections of 100 (3 x 17 + the rest). Behind PgBouncer in",
      'transaction mode, set DB_PREPARE=false.',
    ],
  }),
  DB_PREPARE: required(bool, 'true', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Use named prepared statements (true: each statement text is parsed once per connection). Set',
      'false behind a pooler in transaction mode (PgBouncer), which cannot keep them per client.',
    ],
  }),
  DB_STATEMENT_TIMEOUT: required(dbTimeout, '60s', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      "Longest a single SQL statement may run, lock waits included ('none' or a duration up to 24h):",
      'the server cancels it (the job fails and is retried). Each scan page is one short statement;',
      'migrations run on a connection of their own with a 1 h limit. A connection that owes answers',
      'and stays silent this long plus 30 s is taken for dead on the client side (a half-open TCP',
      "connection) and its queries fail; with 'none' there is no such limit either.",
    ],
  }),
  DB_IDLE_IN_TRANSACTION_TIMEOUT: required(dbTimeout, '60s', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      "Longest a transaction may wait for its next statement ('none' or a duration up to 24h): the",
      'server then ends the session, rolls the transaction back and releases its locks. The daemon',
      'makes no network call inside a transaction, so this only fires on a stuck process.',
    ],
  }),
  EVALUATE_CONCURRENCY: required(intInRange(1, 256), '32', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Evaluation jobs one daemon runs at once (1..256). Single-account jobs in flight together',
      '(payments, timers, operators) are evaluated together, one transaction per batch.',
    ],
  }),
  EVALUATE_BATCH_SIZE: required(intInRange(1, 1_000), '200', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Accounts per evaluation transaction (1..1000): a scan enqueues one job per this many',
      'candidates, and single-account jobs are grouped up to this many. Their rows stay locked for',
      'the transaction, so a payment on one of them waits for at most one batch.',
    ],
  }),
  EFFECTS_CONCURRENCY: required(intInRange(1, 256), '64', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Control-plane effects (suspend, resume, release) one daemon runs at once (1..256), and the',
      'most keep-alive connections it holds to the control plane. Their claims and their outcomes',
      'are coalesced into one statement per batch, so this costs few database connections; the',
      "throughput is about concurrency ÷ the control plane's answer time.",
    ],
  }),
  OUTBOX_POLL_INTERVAL: required(positiveDuration, '1s', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Safety-net poll of the outbox; the relay also runs right after every evaluation (duration).',
    ],
  }),
  CONTROL_PLANE_TIMEOUT: required(positiveDuration, '5s', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Deadline of one control-plane request (duration); a timeout is retried with the same key.',
    ],
  }),
  NOTIFY_CONCURRENCY: required(intInRange(1, 256), '64', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Notification jobs one daemon runs at once, per channel (1..256); also the SMTP connections',
      'it keeps open. 2 × 64 in flight carry 1,000 messages/s while a message takes up to 128 ms.',
    ],
  }),
  NOTIFY_TIMEOUT: required(positiveDuration, '10s', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Deadline of one provider call (an SMTP transaction or a Twilio request) (duration). A timeout',
      'is retried; an SMS is first looked up at the provider so it is never sent twice.',
    ],
  }),
  NOTIFY_GIVE_UP_AFTER: required(positiveDuration, '24h', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'A message that keeps failing transiently (provider down, 429, 5xx) is retried with backoff, at',
      'least every 2 minutes, until it is this old; then it fails and falls back to the other channel.',
    ],
  }),
  EMAIL_RATE_LIMIT: required(rateOrOff, '50', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      "Emails / SMS per second across all daemons (1..10000, or 'off'), held by the queue's limiter.",
    ],
  }),
  SMS_RATE_LIMIT: required(rateOrOff, '10', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
  }),
  SMS_STATUS_CALLBACK_URL: optional(url(['http:', 'https:']), {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Public URL at which Twilio reaches POST /v1/callbacks/sms; sent as the StatusCallback and used',
      'to check X-Twilio-Signature. Unset: no delivery tracking (callbacks are refused).',
    ],
    example: 'https://overdue.example.com/v1/callbacks/sms',
    secret: 'url',
  }),
  TOP_UP_URL: optional(url(['http:', 'https:']), {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ['Where customers top up or pay, shown in notices. Unset: notices say "in the console".'],
    example: 'https://console.example.com/billing/top-up',
    secret: 'url',
  }),
  DKIM_DOMAIN: optional(pattern(/^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, 'a domain name'), {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'DKIM signing of outgoing email: set all three or none (the key file is PEM, read at start).',
    ],
    example: 'example.com',
  }),
  DKIM_SELECTOR: optional(pattern(/^[A-Za-z0-9._-]+$/, 'a DKIM selector'), {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
    example: 'overdue',
  }),
  DKIM_PRIVATE_KEY_FILE: optional(nonEmptyText, {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
    example: '/run/secrets/dkim.pem',
  }),
  OPERATOR_EMAILS: required(addressList, '', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'Operator alerts (failing jobs or providers, late schedulers): comma lists of addresses and',
      'E.164 numbers; empty: alerts only go to the log.',
    ],
  }),
  OPERATOR_PHONES: required(phoneList, '', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
  }),
  OPERATOR_ALERT_INTERVAL: required(positiveDuration, '15m', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ['At most one operator alert per kind of problem per interval (duration).'],
  }),
  LOW_BALANCE_REMINDER_INTERVAL: required(reminderPeriod, 'local-day', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      "R3: repeat low-balance reminders at most once per local calendar day ('local-day') or once per",
      'fixed window (a duration, windows aligned to the Unix epoch).',
    ],
  }),
  OVERDUE_REMINDER_INTERVAL: required(reminderPeriod, 'local-day', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ['R4: same, for overdue reminders during protection.'],
  }),
  LOW_BALANCE_THRESHOLD_MINOR: required(minorUnits, '10000', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ['R3: low-balance threshold (money) for accounts that set none.'],
  }),
  PROTECTION_AMOUNT_MINOR: required(minorUnitsOrNone, '5000', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'R4: default protection quota for accounts that set none. Protected while the overdue amount',
      "is at most PROTECTION_AMOUNT_MINOR (money, or 'none' for no amount limit) and, if set, at most",
      "PROTECTION_DURATION (duration, or 'none') has passed since the overdue episode started.",
      "Exceeding either limit ends protection; both 'none' means no protection at all.",
    ],
  }),
  PROTECTION_DURATION: required(positiveDurationOrNone, 'none', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [],
  }),
  LIVE_PRODUCTS: required(productList, 'live', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      "R6: bill product codes that are this cloud's live video (comma list); other products' unpaid",
      'bills still count towards the quota and are named as the cause.',
    ],
  }),
  STUDIO_RELEASE_DELAY: required(positiveDuration, '24h', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'R9: a studio instance suspended for overdue is released this long after its suspension.',
    ],
  }),
  STUDIO_RELEASE_WARNING: required(positiveDuration, '2h', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'R9: warning sent this long before the release; must be shorter than STUDIO_RELEASE_DELAY.',
    ],
  }),
  QUIET_HOURS: required(quietHours, '22:00-08:00', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      "SMS quiet hours in the account's local time, 'HH:MM-HH:MM' (may wrap midnight; start",
      "inclusive, end exclusive), or 'off'. SMS due inside the window wait for its end.",
    ],
  }),
  PLAN_ALERT_THRESHOLDS: required(planThresholds, '20%,5%', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'R10: plan quota alert thresholds (comma list): N% of the plan total remaining (0 < N <= 100,',
      "decimals allowed), or absolute remaining units as a positive integer (500); 'none' disables.",
    ],
  }),
  PLAN_EXPIRY_REMINDERS: required(durationList, '7d,1d', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: ["R10: remind this long before a plan expires (comma list of durations, or 'none')."],
  }),
  REVERT_NOTICE_WINDOW: required(positiveDuration, '7d', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'R1: a revert-to-pay-as-you-go notice is sent for plans that ended at most this long ago.',
    ],
  }),
  HOLIDAYS: required(holidayList, '', {
    section: 'Policy defaults (rule ids refer to the README)',
    doc: [
      'R11: holidays skipped when counting refund business days (comma list of YYYY-MM-DD dates,',
      'in addition to Saturdays and Sundays).',
    ],
  }),
  METRICS_PUBLIC: required(bool, 'false', {
    section: 'HTTP API and dashboard access',
    doc: [
      '/metrics without credentials (true/false); otherwise it needs the dashboard credentials or an',
      'API token.',
    ],
  }),
  DASHBOARD_VIEWER_USER: optional(pattern(/^[^\s:]+$/, 'a user name without spaces or colons'), {
    section: 'HTTP API and dashboard access',
    doc: [
      "Optional read-only account for the dashboard and the API's GET routes (HTTP Basic). Set both",
      'or neither; must differ from DASHBOARD_USER; password at least 12 characters.',
    ],
    example: 'viewer',
  }),
  DASHBOARD_VIEWER_PASSWORD: optional(pattern(/^.{12,}$/s, 'at least 12 characters long'), {
    section: 'HTTP API and dashboard access',
    doc: [],
    example: 'another-long-password',
    secret: 'value',
  }),
  API_TOKENS: required(apiTokens, '', {
    section: 'HTTP API and dashboard access',
    doc: [
      'Bearer tokens of the HTTP API: comma list of name:scope:token, token at least 32 characters.',
      'Scopes: ingest (only /v1/ingest/*, for the billing system), read (GET routes and /metrics),',
      'operator (everything). The older form name=token still works and is operator scope. The name',
      'is recorded as the actor of its actions. Example: billing:ingest:<32+ characters>',
    ],
    secret: 'value',
  }),
  ALLOWED_HOSTS: optional(hostList, {
    section: 'HTTP API and dashboard access',
    doc: [
      "Host names the HTTP server answers to (Host header; comma list, optionally name:port), or '*'",
      'for any. Unset: on a loopback HOST only localhost, 127.0.0.1 and [::1] (a page on another',
      'site cannot reach the daemon through DNS rebinding); on another HOST any host. Other hosts',
      'get 421.',
    ],
    example: 'worker.example.com',
  }),
  AUTH_FAILURE_LIMIT: required(intInRange(1, 10_000), '10', {
    section: 'HTTP API and dashboard access',
    doc: [
      'Failed logins (wrong Basic password or unknown token) one client address may make per minute;',
      'beyond that it gets 429 with Retry-After until the minute is over.',
    ],
  }),
  HTTP_HEADERS_TIMEOUT: required(positiveDuration, '10s', {
    section: 'HTTP API and dashboard access',
    doc: [
      'The request line and headers must arrive within this (duration); slower clients are cut off.',
    ],
  }),
  HTTP_REQUEST_TIMEOUT: required(positiveDuration, '30s', {
    section: 'HTTP API and dashboard access',
    doc: ['The whole request, body included, must arrive within this (duration).'],
  }),
  HTTP_IDLE_TIMEOUT: required(positiveDuration, '60s', {
    section: 'HTTP API and dashboard access',
    doc: ['A connection with no traffic for this long is closed (duration).'],
  }),
  HTTP_MAX_CONNECTIONS: required(intInRange(1, 100_000), '256', {
    section: 'HTTP API and dashboard access',
    doc: ['Open HTTP connections at most; connections beyond it are closed when accepted.'],
  }),
};

type SettingTable = typeof SETTINGS;

/** The zod fields of the environment schema, one per table entry, in table order. */
const fields = Object.fromEntries(
  Object.entries(SETTINGS).map(([name, entry]) => [name, entry.schema]),
) as { [K in keyof SettingTable]: SettingTable[K]['schema'] };

const envSchema = z.object(fields).superRefine(
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
 * Whether a HOST (or a Host header's name) is a loopback address: `localhost`, or a parsed IPv4
 * address in 127.0.0.0/8, `::1` or an IPv4-mapped `::ffff:127.x.y.z`. Decided on the parsed
 * address, so a name such as `127.evil.example` is not loopback.
 */
export function isLoopback(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (name === 'localhost') return true;
  if (isIPv4(name)) return name.startsWith('127.');
  if (isIPv6(name)) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(name);
    if (mapped?.[1] !== undefined) return mapped[1].startsWith('127.');
    return /^(?:0{0,4}:){7}0{0,3}1$|^::0{0,3}1$/.test(name);
  }
  return false;
}

/** Host names a loopback-bound server answers to when ALLOWED_HOSTS is unset. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

// ---------------------------------------------------------------------------------------------
// The typed configuration handed to the rest of the program.

export interface SmsConfig {
  readonly accountSid: string;
  readonly authToken: string;
  /** Sender number; null when only a messaging service is configured. */
  readonly from: string | null;
  /** Takes precedence over `from` at Twilio when both are set. */
  readonly messagingServiceSid: string | null;
  /** Base URL of a Twilio-compatible API; null for Twilio itself. */
  readonly apiBaseUrl: string | null;
}

export interface NotifyConfig {
  /** Notification jobs one daemon runs at once, per channel queue. */
  readonly concurrency: number;
  /** Deadline of one provider call (SMTP transaction or Twilio request), ms. */
  readonly timeoutMs: number;
  /**
   * A message still failing transiently this long after it was queued fails for good (and falls
   * back to the other channel), ms. Until then it is retried, at least every 2 minutes.
   */
  readonly giveUpAfterMs: number;
  /** Emails per second across every daemon (BullMQ limiter of the email queue); null: no limit. */
  readonly emailRatePerSecond: number | null;
  /** SMS per second across every daemon; null: no limit. */
  readonly smsRatePerSecond: number | null;
  /** Public URL of POST /v1/callbacks/sms as Twilio calls it (also what signatures are checked against). */
  readonly smsStatusCallbackUrl: string | null;
  /** Where customers top up or pay; shown in notices. null: the notices say "in the console". */
  readonly topUpUrl: string | null;
  /** DKIM signing of outgoing mail; null: unsigned (let the relay sign). */
  readonly dkim: {
    readonly domain: string;
    readonly selector: string;
    readonly privateKeyFile: string;
  } | null;
  readonly operators: {
    readonly emails: readonly string[];
    readonly phones: readonly string[];
    /** At most one alert per alert key per interval, ms. */
    readonly alertIntervalMs: number;
  };
}

export interface Config {
  /** null: embedded PGlite under `dataDir`. */
  readonly databaseUrl: string | null;
  readonly dataDir: string;
  readonly redisUrl: string;
  /** BullMQ key prefix; a {hash-tag} keeps every key of a queue in one Redis Cluster slot. */
  readonly queuePrefix: string;
  readonly port: number;
  readonly host: string;
  readonly mail: {
    /** null: messages go to the outbox folder under `dataDir` and the log instead of SMTP. */
    readonly smtpUrl: string | null;
    readonly from: string;
  };
  /** null: SMS go to the outbox folder and the log instead of Twilio. */
  readonly sms: SmsConfig | null;
  /** null: database-only mode, the `services` table is the effect. */
  readonly controlPlane: { readonly url: string; readonly secret: string } | null;
  /** null: the dashboard is not mounted (unless `demo`, where it is mounted without auth). */
  readonly dashboard: { readonly user: string; readonly password: string } | null;
  readonly demo: boolean;
  readonly logLevel: LogLevel;
  /** Written at start unless an operator set the mode since (src/adapters/db/control-store.ts). */
  readonly enforcementMode: EnforcementModeSetting;
  readonly shutdownTimeoutMs: number;
  /** statement_timeout of each ingest batch's statements, ms. */
  readonly ingestStatementTimeoutMs: number;
  readonly scanIntervalMs: number;
  /**
   * The periodic scan skips an account in enforcement (suspended, protected, overdue) that was
   * evaluated less than this ago and has no bill that fell due since; start-up, listener
   * reconnects and operators scan everything.
   */
  readonly scanRecheckIntervalMs: number;
  readonly planScanIntervalMs: number;
  /**
   * Ages after which the prune job deletes finished rows, ms: outbox rows (done, failed,
   * superseded; by their last change), final notifications, and enforcement events.
   */
  readonly retention: {
    readonly outboxMs: number;
    readonly notificationsMs: number;
    readonly eventsMs: number;
  };
  /** Accounts read per keyset page of a scan. */
  readonly scanPageSize: number;
  /** PostgreSQL connections of one daemon (evaluations, effects and senders share them). */
  readonly dbPoolSize: number;
  readonly dbPrepare: boolean;
  /**
   * statement_timeout of the daemon's connections, ms; null: none. A connection silent this
   * long plus 30 s while it owes answers is taken for dead on the client side.
   */
  readonly dbStatementTimeoutMs: number | null;
  /** idle_in_transaction_session_timeout of the daemon's connections, ms; null: none. */
  readonly dbIdleInTransactionTimeoutMs: number | null;
  /** Evaluations one daemon runs at once. */
  readonly evaluateConcurrency: number;
  readonly evaluateBatchSize: number;
  /** Control-plane effects one daemon runs at once. */
  readonly effectsConcurrency: number;
  /** Safety-net poll of the outbox (the relay also runs right after each commit). */
  readonly outboxPollIntervalMs: number;
  /** Deadline of one control-plane request. */
  readonly controlPlaneTimeoutMs: number;
  readonly notify: NotifyConfig;
  /** Local calendar dates (YYYY-MM-DD) skipped as business days for refund arrival (R11). */
  readonly holidays: readonly string[];
  readonly rules: RuleSettings;
  /** /metrics answers without credentials (for a scraper on a trusted network). */
  readonly metricsPublic: boolean;
  /** Read-only dashboard and API account; null: none. */
  readonly dashboardViewer: { readonly user: string; readonly password: string } | null;
  /** Bearer tokens of the HTTP API; `name` is the actor recorded in the event log. */
  readonly apiTokens: readonly ApiToken[];
  readonly http: HttpConfig;
}

export interface HttpConfig {
  /**
   * Host names (lower case, optionally with `:port`) accepted in the Host header; null: any.
   * Unset ALLOWED_HOSTS on a loopback HOST means the loopback names only (DNS rebinding).
   */
  readonly allowedHosts: readonly string[] | null;
  /** Failed logins per client address per minute before 429s. */
  readonly authFailureLimit: number;
  /** The request line and headers must arrive within this, ms. */
  readonly headersTimeoutMs: number;
  /** The whole request (headers and body) must arrive within this, ms. */
  readonly requestTimeoutMs: number;
  /** A connection idle this long is closed, ms. */
  readonly idleTimeoutMs: number;
  /** Open connections at most; further ones are closed on accept. */
  readonly maxConnections: number;
}

/** Used when SMTP_URL is unset and so is MAIL_FROM (messages only go to the outbox folder). */
export const DEFAULT_MAIL_FROM = 'overdue-worker <no-reply@localhost>';

function toConfig(env: Env): Config {
  const defaultProtection: ProtectionQuota = {
    amountMinor: env.PROTECTION_AMOUNT_MINOR,
    durationMs: env.PROTECTION_DURATION,
  };
  const { TWILIO_ACCOUNT_SID: accountSid, TWILIO_AUTH_TOKEN: authToken } = env;
  return {
    databaseUrl: env.DATABASE_URL,
    dataDir: env.DATA_DIR,
    redisUrl: env.REDIS_URL,
    queuePrefix: env.QUEUE_PREFIX,
    port: env.PORT,
    host: env.HOST,
    mail: { smtpUrl: env.SMTP_URL, from: env.MAIL_FROM ?? DEFAULT_MAIL_FROM },
    sms:
      accountSid !== null && authToken !== null
        ? {
            accountSid,
            authToken,
            from: env.TWILIO_FROM,
            messagingServiceSid: env.TWILIO_MESSAGING_SERVICE_SID,
            apiBaseUrl: env.TWILIO_API_BASE_URL,
          }
        : null,
    controlPlane:
      env.CONTROL_PLANE_URL !== null && env.CONTROL_PLANE_SECRET !== null
        ? { url: env.CONTROL_PLANE_URL, secret: env.CONTROL_PLANE_SECRET }
        : null,
    dashboard:
      env.DASHBOARD_USER !== null && env.DASHBOARD_PASSWORD !== null
        ? { user: env.DASHBOARD_USER, password: env.DASHBOARD_PASSWORD }
        : null,
    demo: env.DEMO,
    logLevel: env.LOG_LEVEL,
    enforcementMode: env.ENFORCEMENT_MODE,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT,
    ingestStatementTimeoutMs: env.INGEST_STATEMENT_TIMEOUT,
    scanIntervalMs: env.SCAN_INTERVAL,
    scanRecheckIntervalMs: env.SCAN_RECHECK_INTERVAL,
    planScanIntervalMs: env.PLAN_SCAN_INTERVAL,
    retention: {
      outboxMs: env.RETENTION_OUTBOX,
      notificationsMs: env.RETENTION_NOTIFICATIONS,
      eventsMs: env.RETENTION_EVENTS,
    },
    scanPageSize: env.SCAN_PAGE_SIZE,
    dbPoolSize: env.DB_POOL_SIZE,
    dbPrepare: env.DB_PREPARE,
    dbStatementTimeoutMs: env.DB_STATEMENT_TIMEOUT,
    dbIdleInTransactionTimeoutMs: env.DB_IDLE_IN_TRANSACTION_TIMEOUT,
    evaluateConcurrency: env.EVALUATE_CONCURRENCY,
    evaluateBatchSize: env.EVALUATE_BATCH_SIZE,
    effectsConcurrency: env.EFFECTS_CONCURRENCY,
    outboxPollIntervalMs: env.OUTBOX_POLL_INTERVAL,
    controlPlaneTimeoutMs: env.CONTROL_PLANE_TIMEOUT,
    notify: {
      concurrency: env.NOTIFY_CONCURRENCY,
      timeoutMs: env.NOTIFY_TIMEOUT,
      giveUpAfterMs: env.NOTIFY_GIVE_UP_AFTER,
      emailRatePerSecond: env.EMAIL_RATE_LIMIT,
      smsRatePerSecond: env.SMS_RATE_LIMIT,
      smsStatusCallbackUrl: env.SMS_STATUS_CALLBACK_URL,
      topUpUrl: env.TOP_UP_URL,
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
        alertIntervalMs: env.OPERATOR_ALERT_INTERVAL,
      },
    },
    holidays: env.HOLIDAYS,
    rules: {
      lowBalanceReminder: env.LOW_BALANCE_REMINDER_INTERVAL,
      lowBalanceThresholdMinor: env.LOW_BALANCE_THRESHOLD_MINOR,
      overdueReminder: env.OVERDUE_REMINDER_INTERVAL,
      defaultProtection,
      liveProducts: env.LIVE_PRODUCTS,
      studioReleaseDelayMs: env.STUDIO_RELEASE_DELAY,
      studioReleaseWarningMs: env.STUDIO_RELEASE_WARNING,
      planThresholds: env.PLAN_ALERT_THRESHOLDS,
      planExpiryReminderMs: env.PLAN_EXPIRY_REMINDERS,
      revertNoticeWindowMs: env.REVERT_NOTICE_WINDOW,
      quietHours: env.QUIET_HOURS,
    },
    metricsPublic: env.METRICS_PUBLIC,
    dashboardViewer:
      env.DASHBOARD_VIEWER_USER !== null && env.DASHBOARD_VIEWER_PASSWORD !== null
        ? { user: env.DASHBOARD_VIEWER_USER, password: env.DASHBOARD_VIEWER_PASSWORD }
        : null,
    apiTokens: env.API_TOKENS,
    http: {
      allowedHosts:
        env.ALLOWED_HOSTS !== null
          ? env.ALLOWED_HOSTS.includes('*')
            ? null
            : env.ALLOWED_HOSTS
          : isLoopback(env.HOST)
            ? LOOPBACK_NAMES
            : null,
      authFailureLimit: env.AUTH_FAILURE_LIMIT,
      headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT,
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT,
      idleTimeoutMs: env.HTTP_IDLE_TIMEOUT,
      maxConnections: env.HTTP_MAX_CONNECTIONS,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Entry points.

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

const entries = Object.entries(SETTINGS) as [keyof SettingTable, SettingMeta][];
/** Settings whose whole value is secret (from the table). */
export const SECRET_SETTINGS: readonly string[] = entries
  .filter(([, e]) => e.secret === 'value')
  .map(([name]) => name);
/** Settings that are URLs which may carry a password (userinfo or a `password` query parameter). */
export const URL_SETTINGS: readonly string[] = entries
  .filter(([, e]) => e.secret === 'url')
  .map(([name]) => name);

/** The policy settings (section "Policy defaults"): the ones a what-if may change. */
export const POLICY_SETTINGS: readonly string[] = entries
  .filter(([, e]) => e.section.startsWith('Policy defaults'))
  .map(([name]) => name);

/** The text of .env.example, from the table: sections, comments, defaults and examples. */
export function renderEnvExample(): string {
  const comment = (text: string): string => (text === '' ? '#' : `# ${text}`);
  const out: string[] = [...ENV_EXAMPLE_HEADER.map(comment), ''];
  let section: string | null = null;
  for (const [name, entry] of Object.entries(SETTINGS) as [
    string,
    SettingMeta & { fallback: string | null; example?: string | null },
  ][]) {
    if (entry.section !== section) {
      if (section !== null) out.push('');
      section = entry.section;
      out.push(`# --- ${section} ${'-'.repeat(Math.max(3, 88 - section.length))}`);
      out.push(...(SECTIONS[section] ?? []).map(comment), '');
    }
    out.push(...entry.doc.map(comment));
    out.push(
      entry.fallback !== null ? `${name}=${entry.fallback}` : `# ${name}=${entry.example ?? ''}`,
    );
  }
  return `${out.join('\n')}\n`;
}

export interface ConfigProblem {
  /** The environment variable at fault. */
  readonly name: string;
  /** What is expected; never contains the value. */
  readonly message: string;
}

export type ConfigResult =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export function loadConfig(env: Readonly<Record<string, string | undefined>>): ConfigResult {
  // Only our settings are looked at; trimmed, and empty means unset.
  const input: Record<string, string> = {};
  for (const name of SETTING_NAMES) {
    const value = env[name]?.trim();
    if (value !== undefined && value !== '') input[name] = value;
  }

  const parsed = envSchema.safeParse(input);
  if (parsed.success) return { ok: true, config: toConfig(parsed.data) };

  const secrets = secretValues(input);
  const problems = parsed.error.issues.map((issue) => ({
    name: issue.path.length > 0 ? issue.path.map(String).join('.') : '(environment)',
    message: scrub(issue.message, secrets),
  }));
  problems.sort((a, b) => order(a.name) - order(b.name));
  return { ok: false, problems };
}

function order(name: string): number {
  const i = (SETTING_NAMES as readonly string[]).indexOf(name);
  return i === -1 ? SETTING_NAMES.length : i;
}

/** The secret strings present in the input, longest first (so a substring never wins). */
function secretValues(input: Readonly<Record<string, string>>): string[] {
  const found = new Set<string>();
  for (const name of SECRET_SETTINGS) {
    const value = input[name];
    if (value !== undefined) found.add(value);
  }
  for (const name of URL_SETTINGS) {
    const value = input[name];
    if (value === undefined) continue;
    // Lenient on purpose: the URL may be malformed, and its password must still be found.
    for (const m of value.matchAll(/\/\/[^/@]*?:([^/@]*)@|[?&](?:password|pass)=([^&#]*)/gi)) {
      const secret = m[1] ?? m[2];
      if (secret) {
        found.add(secret);
        found.add(safeDecode(secret));
      }
    }
  }
  // A very short "secret" would mangle every message and protects nothing.
  return [...found].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function scrub(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const secret of secrets) {
    // Whole tokens only, so a short bad password like "short" does not eat "shorter".
    const escaped = secret.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    out = out.replace(new RegExp(`(?<![A-Za-z0-9])${escaped}(?![A-Za-z0-9])`, 'g'), REDACTED);
  }
  return out;
}

export interface ExitIo {
  readonly stderr: (text: string) => void;
  readonly exit: (code: number) => never;
}

const processIo: ExitIo = {
  stderr: (text) => {
    process.stderr.write(text);
  },
  exit: (code) => process.exit(code),
};

/** The parsed configuration, or a list of every bad setting on stderr and exit code 1. */
export function parseConfigOrExit(
  env: Readonly<Record<string, string | undefined>>,
  io: ExitIo = processIo,
): Config {
  const result = loadConfig(env);
  if (result.ok) return result.config;
  io.stderr(formatProblems(result.problems));
  return io.exit(1);
}

export function formatProblems(problems: readonly ConfigProblem[]): string {
  const lines = problems.map((p) => `  - ${p.name} ${p.message}`);
  return `Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}); see .env.example:\n${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Redaction for the startup log line.

/** A URL with its password (userinfo or `password`/`pass` query parameter) masked. */
export function redactUrl(text: string): string {
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    // Not parseable: mask anything that looks like userinfo rather than risk printing it.
    return text.replace(/\/\/[^/@]*@/, '//***@');
  }
  // `***` rather than REDACTED: brackets would be percent-encoded inside a URL.
  if (parsed.password !== '') parsed.password = '***';
  for (const key of [...parsed.searchParams.keys()]) {
    if (/^(password|pass|secret|token)$/i.test(key)) parsed.searchParams.set(key, '***');
  }
  return parsed.toString();
}

/** The configuration with every secret masked; safe to log. */
export function redactedConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    databaseUrl: config.databaseUrl === null ? null : redactUrl(config.databaseUrl),
    redisUrl: redactUrl(config.redisUrl),
    mail: {
      ...config.mail,
      smtpUrl: config.mail.smtpUrl === null ? null : redactUrl(config.mail.smtpUrl),
    },
    sms:
      config.sms === null
        ? null
        : {
            ...config.sms,
            authToken: REDACTED,
            apiBaseUrl: config.sms.apiBaseUrl === null ? null : redactUrl(config.sms.apiBaseUrl),
          },
    controlPlane:
      config.controlPlane === null
        ? null
        : { url: redactUrl(config.controlPlane.url), secret: REDACTED },
    notify: {
      ...config.notify,
      smsStatusCallbackUrl:
        config.notify.smsStatusCallbackUrl === null
          ? null
          : redactUrl(config.notify.smsStatusCallbackUrl),
      topUpUrl: config.notify.topUpUrl === null ? null : redactUrl(config.notify.topUpUrl),
    },
    dashboard: config.dashboard === null ? null : { ...config.dashboard, password: REDACTED },
    dashboardViewer:
      config.dashboardViewer === null ? null : { ...config.dashboardViewer, password: REDACTED },
    apiTokens: config.apiTokens.map((t) => ({ name: t.name, scope: t.scope, token: REDACTED })),
  };
}
