import type { BreakerLimits } from '../domain/breaker';
import { ENFORCEMENT_MODES, type EnforcementMode } from '../domain/modes';
import { isIPv4, isIPv6 } from 'node:net';
import type { PlanThreshold, QuietHours, ReminderPeriod } from '../domain/rules';

/**
 * The value parsers of the settings. Each takes the trimmed, non-empty text of a setting and
 * returns the parsed value or an `Invalid` carrying a message without the value, so a secret (or
 * a URL carrying a password) cannot leak through it.
 *
 * - Durations are one or more `<integer><unit>` groups, units ms, s, m, h, d: `500ms`, `90s`,
 *   `15m`, `24h`, `7d`, `1h30m`. No bare numbers (is `30` seconds or ms?), no decimals, no signs.
 * - Money is an integer count of minor units of the account's currency (`10000` = 100.00 USD).
 */

/** A refused value: what is expected, never the value itself. */
export class Invalid {
  constructor(readonly message: string) {}
}
export type Parsed<T> = T | Invalid;

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

/**
 * The start of a window written as a duration back from `now` (`24h`) or as an instant;
 * undefined when `text` is neither.
 */
export function windowStart(text: string, now: Date): Date | undefined {
  const ms = parseDuration(text);
  if (ms !== undefined) return new Date(now.getTime() - ms);
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? undefined : at;
}

/** Milliseconds of a duration such as `90s` or `1h30m`; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) {
    total += Number(amount) * (DURATION_UNITS_MS[unit ?? ''] ?? Number.NaN);
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

export function positiveDuration(raw: string): Parsed<number> {
  const ms = parseDuration(raw);
  if (ms === undefined) return new Invalid(`must be ${DURATION_HINT}`);
  if (ms <= 0) return new Invalid('must be a duration greater than zero');
  return ms;
}

export function reminderPeriod(raw: string): Parsed<ReminderPeriod> {
  if (raw === 'local-day') return { kind: 'local-day' };
  const ms = positiveDuration(raw);
  if (ms instanceof Invalid) {
    return new Invalid(`must be 'local-day' (once per local calendar day) or ${DURATION_HINT}`);
  }
  return { kind: 'every', ms };
}

/** A non-negative integer of minor units; decimals are refused rather than rounded. */
export function minorUnits(raw: string): Parsed<number> {
  if (/^\d+[.,]\d*$/.test(raw)) {
    return new Invalid('must be an integer of minor units without decimals (10000 = 100.00)');
  }
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    return new Invalid('must be a non-negative integer of minor units (10000 = 100.00)');
  }
  return Number(raw);
}

export function minorUnitsOrNone(raw: string): Parsed<number | null> {
  return raw === 'none' ? null : minorUnits(raw);
}

export function positiveDurationOrNone(raw: string): Parsed<number | null> {
  return raw === 'none' ? null : positiveDuration(raw);
}

/** A PostgreSQL timeout setting: 'none', or a duration up to 24h (the server takes ms in an int). */
export function dbTimeout(raw: string): Parsed<number | null> {
  const ms = positiveDurationOrNone(raw);
  if (ms instanceof Invalid) return new Invalid(`must be 'none' or ${DURATION_HINT}`);
  if (ms !== null && ms > 86_400_000) return new Invalid('must be at most 24h');
  return ms;
}

export function port(raw: string): Parsed<number> {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65_535) return new Invalid('must be an integer from 0 to 65535');
  return n;
}

export function intInRange(min: number, max: number): (raw: string) => Parsed<number> {
  return (raw) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      return new Invalid(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

export function url(protocols: readonly string[]): (raw: string) => Parsed<string> {
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

export function nonEmptyText(raw: string): Parsed<string> {
  return raw.length > 0 ? raw : new Invalid('must not be empty');
}

const ADDRESS = /^[^\s@<>]+@[^\s@<>]+$/;
/** `user@example.com` or `Display Name <user@example.com>`. */
export function mailbox(raw: string): Parsed<string> {
  const named = /^[^<>]*<([^<>]+)>$/.exec(raw);
  const address = named ? named[1] : raw;
  if (address === undefined || !ADDRESS.test(address)) {
    return new Invalid(
      "must be an address like 'billing@example.com' or 'Billing <billing@example.com>'",
    );
  }
  return raw;
}

export function pattern(re: RegExp, description: string): (raw: string) => Parsed<string> {
  return (raw) => (re.test(raw) ? raw : new Invalid(`must be ${description}`));
}

/** An HTTP Basic user name. */
export const userName = pattern(/^[^\s:]+$/, 'a user name without spaces or colons');
/** An HTTP Basic password. */
export const password = pattern(/^.{12,}$/s, 'at least 12 characters long');

/** Messages per second for a channel (1..10000), or `off` for no limit. */
export function rateOrOff(raw: string): Parsed<number | null> {
  if (raw === 'off') return null;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 10_000) {
    return new Invalid("must be messages per second from 1 to 10000, or 'off'");
  }
  return n;
}

/** Comma list of plain email addresses (may be empty). */
export function addressList(raw: string): Parsed<string[]> {
  const items = listItems(raw);
  if (!items.every((item) => ADDRESS.test(item))) {
    return new Invalid('must be a comma list of addresses like ops@example.com');
  }
  return [...new Set(items)];
}

/** Comma list of E.164 phone numbers (may be empty). */
export function phoneList(raw: string): Parsed<string[]> {
  const items = listItems(raw);
  if (!items.every((item) => /^\+[1-9]\d{1,14}$/.test(item))) {
    return new Invalid('must be a comma list of phone numbers in E.164 form, e.g. +14155550100');
  }
  return [...new Set(items)];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function logLevel(raw: string): Parsed<LogLevel> {
  const level = LOG_LEVELS.find((l) => l === raw);
  return level ?? new Invalid(`must be one of ${LOG_LEVELS.join(', ')}`);
}

export function enforcementMode(raw: string): Parsed<EnforcementMode> {
  const mode = ENFORCEMENT_MODES.find((m) => m === raw);
  return mode ?? new Invalid(`must be one of ${ENFORCEMENT_MODES.join(', ')}`);
}

const BREAKER = /^(\d+)\/(\S+?)(?:,(\d+(?:\.\d+)?)%)?$/;
const BREAKER_HINT = 'off, or <count>/<window>[,<share>%] like 100/10m,1%';

/**
 * SUSPENSION_BREAKER: `off`, or the suspensions admitted within a sliding window before the
 * breaker trips, as a count and optionally a share of the accounts in good standing (the larger
 * counts): `100/10m,1%`. Null when off.
 */
export function suspensionBreaker(raw: string): Parsed<BreakerLimits | null> {
  if (raw === 'off') return null;
  const m = BREAKER.exec(raw);
  if (m === null) return new Invalid(`must be ${BREAKER_HINT}`);
  const count = Number(m[1]);
  const windowMs = parseDuration(m[2] ?? '');
  const sharePct = m[3] === undefined ? 0 : Number(m[3]);
  if (!Number.isSafeInteger(count) || count < 1 || count > 10_000_000) {
    return new Invalid(`the count must be an integer from 1 to 10000000 (${BREAKER_HINT})`);
  }
  if (windowMs === undefined || windowMs < 1_000 || windowMs > 30 * 86_400_000) {
    return new Invalid(`the window must be a duration from 1s to 30d (${BREAKER_HINT})`);
  }
  if (!(sharePct >= 0 && sharePct <= 100)) {
    return new Invalid(`the share must be from 0% to 100% (${BREAKER_HINT})`);
  }
  return { count, windowMs, sharePct };
}

/**
 * TRUST_PROXY: which peers may set the client address with X-Forwarded-For. `off` (the socket's
 * peer is the client), a hop count (1..10: that many proxies in front), or a comma list of proxy
 * addresses and CIDR blocks. Trusting any peer is not offered: a client could then name any
 * address, and the failed-login throttle would count nothing.
 */
export function trustProxy(raw: string): Parsed<false | number | string[]> {
  if (raw === 'off') return false;
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    return hops >= 1 && hops <= 10 ? hops : new Invalid('a hop count must be from 1 to 10');
  }
  const items = listItems(raw);
  const bad = items.filter((item) => {
    const [address, bits, ...rest] = item.split('/');
    if (rest.length > 0 || address === undefined) return true;
    const v4 = isIPv4(address);
    if (!v4 && !isIPv6(address)) return true;
    if (bits === undefined) return false;
    const n = Number(bits);
    return !/^\d+$/.test(bits) || n > (v4 ? 32 : 128);
  });
  if (items.length === 0 || bad.length > 0) {
    return new Invalid(
      'must be off, a hop count (1..10) or a list of proxy addresses or CIDR blocks',
    );
  }
  return items;
}

export function bool(raw: string): Parsed<boolean> {
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

export function productList(raw: string): Parsed<string[]> {
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
export function quietHours(raw: string): Parsed<QuietHours> {
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
export function planThresholds(raw: string): Parsed<PlanThreshold[]> {
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
export function durationList(raw: string): Parsed<number[]> {
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
export function holidayList(raw: string): Parsed<string[]> {
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
export function apiTokens(raw: string): Parsed<ApiToken[]> {
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
export function hostList(raw: string): Parsed<string[]> {
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
