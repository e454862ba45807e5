import { scrub, secretValues } from './mask';
import {
  envSchema,
  RULE_SETTING_NAMES,
  SETTING_NAMES,
  toConfig,
  type Config,
  type RuleSettingName,
} from './schema';
import { ENV_EXAMPLE_HEADER, SETTINGS, type Section, type SettingMeta } from './settings';

/**
 * The whole environment, parsed once at start by one zod schema. Nothing else in the project reads
 * `process.env`: main.ts calls `parseConfigOrExit(process.env)` and passes the typed result down.
 *
 * Each setting is written once, in the table of settings.ts (parser, default, section and
 * comment, secret kind), and mapped to the configuration's shape once, in toConfig (schema.ts);
 * the schema, the `Config` type, .env.example and the masking lists are derived from those.
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

export {
  isLoopback,
  parseDuration,
  windowStart,
  PLAN_SCAN_INTERVAL_MIN_MS,
  planScanIntervalSetting,
  SCAN_INTERVAL_MIN_MS,
  scanIntervalSetting,
  TOKEN_SCOPES,
  type ApiToken,
  type LogLevel,
  type TokenScope,
} from './parsers';
export { REDACTED, redactedConfig, redactUrl, SECRET_SETTINGS, URL_SETTINGS } from './mask';
export {
  DEFAULT_MAIL_FROM,
  RULE_SETTING_NAMES,
  SETTING_NAMES,
  settingProblem,
  type Config,
  type HttpConfig,
  type NotifyConfig,
  type SmsConfig,
} from './schema';

/** The text of .env.example, from the table: sections, comments, defaults and examples. */
export function renderEnvExample(): string {
  const comment = (text: string): string => (text === '' ? '#' : `# ${text}`);
  const out: string[] = [...ENV_EXAMPLE_HEADER.map(comment), ''];
  let section: Section | null = null;
  for (const [name, entry] of Object.entries(SETTINGS) as [
    string,
    SettingMeta & { fallback: string | null; example?: string | null },
  ][]) {
    if (entry.section !== section) {
      if (section !== null) out.push('');
      section = entry.section;
      const { title, intro } = section;
      out.push(`# --- ${title} ${'-'.repeat(Math.max(3, 88 - title.length))}`);
      out.push(...intro.map(comment), '');
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
  if (parsed.success) {
    const ruleInput: Partial<Record<RuleSettingName, string>> = {};
    for (const name of RULE_SETTING_NAMES) {
      // As given, else the default's text: the same rules give the same ruleInput.
      const text = input[name] ?? SETTINGS[name].fallback;
      if (text !== null) ruleInput[name] = text;
    }
    return { ok: true, config: toConfig(parsed.data, ruleInput) };
  }

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
