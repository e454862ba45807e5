import type { Config } from './schema';
import { SETTINGS, type SettingMeta, type SettingName } from './settings';

/**
 * Secrets kept out of output: the settings the table marks secret, their values scrubbed from
 * error messages, and the configuration with every secret masked for the startup log line.
 */

/** What a masked secret looks like in messages and logs. */
export const REDACTED = '[redacted]';

const entries = Object.entries(SETTINGS) as [SettingName, SettingMeta][];
/** Settings whose whole value is secret (from the table). */
export const SECRET_SETTINGS: readonly string[] = entries
  .filter(([, e]) => e.secret === 'value')
  .map(([name]) => name);
/** Settings that are URLs which may carry a password (userinfo or a `password` query parameter). */
export const URL_SETTINGS: readonly string[] = entries
  .filter(([, e]) => e.secret === 'url')
  .map(([name]) => name);

/** The secret strings present in the input, longest first (so a substring never wins). */
export function secretValues(input: Readonly<Record<string, string>>): string[] {
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

export function scrub(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const secret of secrets) {
    // Whole tokens only, so a short bad password like "short" does not eat "shorter".
    const escaped = secret.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    out = out.replace(new RegExp(`(?<![A-Za-z0-9])${escaped}(?![A-Za-z0-9])`, 'g'), REDACTED);
  }
  return out;
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
