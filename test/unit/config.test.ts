import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  formatProblems,
  loadConfig,
  parseConfigOrExit,
  parseDuration,
  redactedConfig,
  redactUrl,
  renderEnvExample,
  SETTING_NAMES,
  type Config,
  type ConfigProblem,
} from '../../src/config';
import { DEFAULT_RULES } from '../../src/domain/rules';
import { createLogger } from '../../src/logger';

type Env = Record<string, string | undefined>;

const SID = `AC${'0123456789abcdef'.repeat(2)}`;
const MSID = `MG${'0123456789abcdef'.repeat(2)}`;
const CP_SECRET = 'cp-secret-0123456789-0123456789-abcdef';

function ok(env: Env): Config {
  const result = loadConfig(env);
  if (!result.ok)
    throw new Error(`expected a valid config, got ${formatProblems(result.problems)}`);
  return result.config;
}

function problems(env: Env): readonly ConfigProblem[] {
  const result = loadConfig(env);
  if (result.ok) throw new Error('expected configuration problems, got a valid config');
  return result.problems;
}

function names(env: Env): string[] {
  return problems(env).map((p) => p.name);
}

describe('defaults', () => {
  it('an empty environment parses to the documented defaults', () => {
    const config = ok({});
    expect(config).toEqual({
      databaseUrl: null,
      dataDir: './data',
      redisUrl: 'redis://127.0.0.1:6379',
      queuePrefix: '{overdue}',
      port: 8080,
      host: '127.0.0.1',
      mail: { smtpUrl: null, from: 'overdue-worker <no-reply@localhost>' },
      sms: null,
      controlPlane: null,
      dashboard: null,
      demo: false,
      logLevel: 'info',
      enforcementMode: 'enforce',
      suspensionBreaker: { count: 100, windowMs: 600_000, sharePct: 1 },
      ruleInput: {
        LOW_BALANCE_REMINDER_INTERVAL: 'local-day',
        LOW_BALANCE_THRESHOLD_MINOR: '10000',
        OVERDUE_REMINDER_INTERVAL: 'local-day',
        PROTECTION_AMOUNT_MINOR: '5000',
        PROTECTION_DURATION: 'none',
        LIVE_PRODUCTS: 'live',
        STUDIO_RELEASE_DELAY: '24h',
        STUDIO_RELEASE_WARNING: '2h',
        PLAN_ALERT_THRESHOLDS: '20%,5%',
        PLAN_EXPIRY_REMINDERS: '7d,1d',
        REVERT_NOTICE_WINDOW: '7d',
        QUIET_HOURS: '22:00-08:00',
      },
      shutdownTimeoutMs: 30_000,
      ingestStatementTimeoutMs: 30_000,
      scanIntervalMs: 60_000,
      planScanIntervalMs: 15 * 60_000,
      retention: {
        outboxMs: 7 * 86_400_000,
        notificationsMs: 90 * 86_400_000,
        eventsMs: 400 * 86_400_000,
      },
      scanPageSize: 2_000,
      scanRecheckIntervalMs: 600_000,
      dbPoolSize: 16,
      dbPrepare: true,
      dbStatementTimeoutMs: 60_000,
      dbIdleInTransactionTimeoutMs: 60_000,
      evaluateConcurrency: 32,
      evaluateBatchSize: 200,
      effectsConcurrency: 64,
      outboxPollIntervalMs: 1_000,
      controlPlaneTimeoutMs: 5_000,
      notify: {
        concurrency: 64,
        timeoutMs: 10_000,
        giveUpAfterMs: 86_400_000,
        emailRatePerSecond: 50,
        smsRatePerSecond: 10,
        smsStatusCallbackUrl: null,
        topUpUrl: null,
        dkim: null,
        operators: { emails: [], phones: [], alertIntervalMs: 15 * 60_000 },
      },
      holidays: [],
      rules: DEFAULT_RULES,
      metricsPublic: false,
      dashboardViewer: null,
      apiTokens: [],
      http: {
        allowedHosts: ['localhost', '127.0.0.1', '[::1]'],
        authFailureLimit: 10,
        trustProxy: false,
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 30_000,
        idleTimeoutMs: 60_000,
        maxConnections: 256,
      },
    } satisfies Config);
  });

  it('empty and blank values count as unset', () => {
    expect(ok({ PORT: '', REDIS_URL: '   ', QUIET_HOURS: '' })).toEqual(ok({}));
  });

  it('unrelated environment variables are ignored', () => {
    expect(ok({ PATH: '/usr/bin', HOME: '/root', NODE_ENV: 'test' })).toEqual(ok({}));
  });

  it('.env.example is current: it is what the settings table renders (npm run env:example)', () => {
    const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    expect(text).toBe(renderEnvExample());
  });

  it('.env.example parses, equals the defaults and documents every setting', () => {
    const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const env: Env = {};
    for (const line of text.split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line);
      if (m?.[1] !== undefined) env[m[1]] = m[2];
    }
    expect(ok(env)).toEqual(ok({}));
    const documented = new Set([...text.matchAll(/^#? ?([A-Z][A-Z_]+)=/gm)].map((m) => m[1]));
    expect(SETTING_NAMES.filter((name) => !documented.has(name))).toEqual([]);
  });

  it('a full production-like environment parses', () => {
    const config = ok({
      DATABASE_URL: 'postgres://overdue:pw@db:5432/overdue',
      REDIS_URL: 'rediss://:pw@redis:6380/2',
      QUEUE_PREFIX: 'prod{overdue}',
      PORT: '0',
      HOST: '0.0.0.0',
      SMTP_URL: 'smtps://user:pw@mail.example.com:465',
      MAIL_FROM: 'Billing <billing@example.com>',
      TWILIO_ACCOUNT_SID: SID,
      TWILIO_AUTH_TOKEN: 'token-abc',
      TWILIO_MESSAGING_SERVICE_SID: MSID,
      TWILIO_API_BASE_URL: 'http://127.0.0.1:9999',
      CONTROL_PLANE_URL: 'https://control.example.com/hooks',
      CONTROL_PLANE_SECRET: CP_SECRET,
      DASHBOARD_USER: 'ops',
      DASHBOARD_PASSWORD: 'twelve-chars-or-more',
      LOG_LEVEL: 'warn',
      HOLIDAYS: '2025-12-25, 2025-01-01,2025-12-25',
    });
    expect(config.port).toBe(0);
    expect(config.sms).toEqual({
      accountSid: SID,
      authToken: 'token-abc',
      from: null,
      messagingServiceSid: MSID,
      apiBaseUrl: 'http://127.0.0.1:9999',
    });
    expect(config.controlPlane).toEqual({
      url: 'https://control.example.com/hooks',
      secret: CP_SECRET,
    });
    expect(config.dashboard).toEqual({ user: 'ops', password: 'twelve-chars-or-more' });
    expect(config.mail).toEqual({
      smtpUrl: 'smtps://user:pw@mail.example.com:465',
      from: 'Billing <billing@example.com>',
    });
    expect(config.holidays).toEqual(['2025-01-01', '2025-12-25']);
  });
});

describe('bad values are each reported by name', () => {
  const cases: { name: string; env: Env; bad: string[] }[] = [
    { name: 'PORT not a number', env: { PORT: 'abc' }, bad: ['PORT'] },
    { name: 'PORT out of range', env: { PORT: '65536' }, bad: ['PORT'] },
    { name: 'PORT negative', env: { PORT: '-1' }, bad: ['PORT'] },
    {
      name: 'DATABASE_URL not postgres',
      env: { DATABASE_URL: 'mysql://h/db' },
      bad: ['DATABASE_URL'],
    },
    { name: 'DATABASE_URL not a URL', env: { DATABASE_URL: 'db.local' }, bad: ['DATABASE_URL'] },
    {
      name: 'REDIS_URL wrong scheme',
      env: { REDIS_URL: 'http://127.0.0.1:6379' },
      bad: ['REDIS_URL'],
    },
    { name: 'QUEUE_PREFIX with a colon', env: { QUEUE_PREFIX: 'a:b' }, bad: ['QUEUE_PREFIX'] },
    { name: 'QUEUE_PREFIX two hash tags', env: { QUEUE_PREFIX: '{a}{b}' }, bad: ['QUEUE_PREFIX'] },
    { name: 'QUEUE_PREFIX empty hash tag', env: { QUEUE_PREFIX: '{}' }, bad: ['QUEUE_PREFIX'] },
    {
      name: 'SMTP_URL wrong scheme',
      env: { SMTP_URL: 'http://mail', MAIL_FROM: 'billing@example.com' },
      bad: ['SMTP_URL'],
    },
    {
      name: 'SMTP_URL bad and MAIL_FROM missing: both reported',
      env: { SMTP_URL: 'http://mail' },
      bad: ['SMTP_URL', 'MAIL_FROM'],
    },
    { name: 'SMTP_URL without MAIL_FROM', env: { SMTP_URL: 'smtp://mail:25' }, bad: ['MAIL_FROM'] },
    { name: 'MAIL_FROM not an address', env: { MAIL_FROM: 'billing' }, bad: ['MAIL_FROM'] },
    { name: 'LOG_LEVEL unknown', env: { LOG_LEVEL: 'verbose' }, bad: ['LOG_LEVEL'] },
    { name: 'DEMO not a boolean', env: { DEMO: 'maybe' }, bad: ['DEMO'] },
    {
      name: 'DEMO on a public HOST without credentials',
      env: { DEMO: 'true', HOST: '0.0.0.0' },
      bad: ['HOST'],
    },
    {
      name: 'CONTROL_PLANE_URL without its secret',
      env: { CONTROL_PLANE_URL: 'https://cp.example' },
      bad: ['CONTROL_PLANE_SECRET'],
    },
    {
      name: 'CONTROL_PLANE_SECRET without its URL',
      env: { CONTROL_PLANE_SECRET: CP_SECRET },
      bad: ['CONTROL_PLANE_URL'],
    },
    {
      name: 'CONTROL_PLANE_SECRET too short',
      env: { CONTROL_PLANE_URL: 'https://cp.example', CONTROL_PLANE_SECRET: 'short-secret' },
      bad: ['CONTROL_PLANE_SECRET'],
    },
    {
      name: 'CONTROL_PLANE_URL not http(s)',
      env: { CONTROL_PLANE_URL: 'ftp://cp.example', CONTROL_PLANE_SECRET: CP_SECRET },
      bad: ['CONTROL_PLANE_URL'],
    },
    {
      name: 'DASHBOARD_PASSWORD without user',
      env: { DASHBOARD_PASSWORD: 'long-enough-password' },
      bad: ['DASHBOARD_USER'],
    },
    {
      name: 'DASHBOARD_USER without password',
      env: { DASHBOARD_USER: 'ops' },
      bad: ['DASHBOARD_PASSWORD'],
    },
    {
      name: 'DASHBOARD_PASSWORD shorter than 12',
      env: { DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'elevenchars' },
      bad: ['DASHBOARD_PASSWORD'],
    },
    {
      name: 'TWILIO_ACCOUNT_SID malformed',
      env: { TWILIO_ACCOUNT_SID: 'AC123', TWILIO_AUTH_TOKEN: 't0ken', TWILIO_FROM: '+14155550100' },
      bad: ['TWILIO_ACCOUNT_SID'],
    },
    {
      name: 'TWILIO_FROM not E.164',
      env: { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: 't0ken', TWILIO_FROM: '4155550100' },
      bad: ['TWILIO_FROM'],
    },
    {
      name: 'TWILIO_MESSAGING_SERVICE_SID malformed',
      env: {
        TWILIO_ACCOUNT_SID: SID,
        TWILIO_AUTH_TOKEN: 't0ken',
        TWILIO_MESSAGING_SERVICE_SID: 'MG1',
      },
      bad: ['TWILIO_MESSAGING_SERVICE_SID'],
    },
    {
      name: 'Twilio half configured: SID only',
      env: { TWILIO_ACCOUNT_SID: SID },
      bad: ['TWILIO_AUTH_TOKEN', 'TWILIO_FROM'],
    },
    {
      name: 'Twilio half configured: token only',
      env: { TWILIO_AUTH_TOKEN: 't0ken' },
      bad: ['TWILIO_ACCOUNT_SID', 'TWILIO_FROM'],
    },
    {
      name: 'TWILIO_API_BASE_URL not a URL',
      env: {
        TWILIO_ACCOUNT_SID: SID,
        TWILIO_AUTH_TOKEN: 't0ken',
        TWILIO_FROM: '+14155550100',
        TWILIO_API_BASE_URL: 'localhost:9999',
      },
      bad: ['TWILIO_API_BASE_URL'],
    },
    {
      name: 'Twilio: a bad SID still counts as given, the missing sender is reported too',
      env: { TWILIO_ACCOUNT_SID: 'AC123', TWILIO_AUTH_TOKEN: 't0ken' },
      bad: ['TWILIO_ACCOUNT_SID', 'TWILIO_FROM'],
    },
    {
      name: 'money with decimals',
      env: { LOW_BALANCE_THRESHOLD_MINOR: '100.50', PROTECTION_AMOUNT_MINOR: '50.0' },
      bad: ['LOW_BALANCE_THRESHOLD_MINOR', 'PROTECTION_AMOUNT_MINOR'],
    },
    {
      name: 'money negative or not a number',
      env: { LOW_BALANCE_THRESHOLD_MINOR: '-1', PROTECTION_AMOUNT_MINOR: 'lots' },
      bad: ['LOW_BALANCE_THRESHOLD_MINOR', 'PROTECTION_AMOUNT_MINOR'],
    },
    {
      name: 'money beyond a safe integer',
      env: { LOW_BALANCE_THRESHOLD_MINOR: '9007199254740993' },
      bad: ['LOW_BALANCE_THRESHOLD_MINOR'],
    },
    {
      name: 'studio warning not shorter than the release delay',
      env: { STUDIO_RELEASE_DELAY: '2h', STUDIO_RELEASE_WARNING: '2h' },
      bad: ['STUDIO_RELEASE_WARNING'],
    },
    {
      name: 'studio warning longer than the default delay',
      env: { STUDIO_RELEASE_WARNING: '25h' },
      bad: ['STUDIO_RELEASE_WARNING'],
    },
    { name: 'LIVE_PRODUCTS empty list', env: { LIVE_PRODUCTS: ',,' }, bad: ['LIVE_PRODUCTS'] },
    {
      name: 'LIVE_PRODUCTS with spaces',
      env: { LIVE_PRODUCTS: 'live video' },
      bad: ['LIVE_PRODUCTS'],
    },
    { name: 'HOLIDAYS impossible date', env: { HOLIDAYS: '2025-02-30' }, bad: ['HOLIDAYS'] },
    { name: 'HOLIDAYS not ISO', env: { HOLIDAYS: '25/12/2025' }, bad: ['HOLIDAYS'] },
    {
      name: 'several at once, in documentation order',
      env: {
        PORT: 'abc',
        LOG_LEVEL: 'loud',
        SCAN_INTERVAL: '10',
        QUIET_HOURS: '22-8',
        PLAN_ALERT_THRESHOLDS: '20',
        CONTROL_PLANE_URL: 'https://cp.example',
        HOLIDAYS: 'xmas',
      },
      bad: [
        'PORT',
        'CONTROL_PLANE_SECRET',
        'LOG_LEVEL',
        'SCAN_INTERVAL',
        'QUIET_HOURS',
        'HOLIDAYS',
      ],
    },
  ];

  it.each(cases)('$name', ({ env, bad }) => {
    expect(names(env)).toEqual(bad);
  });

  it('every message is non-empty and formatProblems lists each name on its own line', () => {
    const list = problems({ PORT: 'abc', LOG_LEVEL: 'loud' });
    for (const p of list) expect(p.message.length).toBeGreaterThan(5);
    const text = formatProblems(list);
    expect(text).toMatch(/^Invalid configuration \(2 problems\)/);
    expect(text).toContain('\n  - PORT ');
    expect(text).toContain('\n  - LOG_LEVEL ');
  });

  it('parseConfigOrExit writes the list to stderr and exits 1', () => {
    let written = '';
    let code: number | undefined;
    class Exit extends Error {}
    expect(() =>
      parseConfigOrExit(
        { PORT: 'abc' },
        {
          stderr: (text) => {
            written += text;
          },
          exit: (c) => {
            code = c;
            throw new Exit();
          },
        },
      ),
    ).toThrow(Exit);
    expect(code).toBe(1);
    expect(written).toContain('PORT');
  });

  it('parseConfigOrExit returns the config when valid', () => {
    expect(parseConfigOrExit({})).toEqual(ok({}));
  });
});

describe('secrets never appear in messages', () => {
  const SECRET = 'supersecretvalue';
  const cases: { name: string; env: Env }[] = [
    {
      name: 'TWILIO_AUTH_TOKEN with a bad SID and a space',
      env: { TWILIO_AUTH_TOKEN: `${SECRET} x`, TWILIO_ACCOUNT_SID: 'bad' },
    },
    {
      name: 'TWILIO_AUTH_TOKEN alone',
      env: { TWILIO_AUTH_TOKEN: SECRET },
    },
    {
      name: 'CONTROL_PLANE_SECRET too short and without URL',
      env: { CONTROL_PLANE_SECRET: SECRET },
    },
    {
      name: 'DASHBOARD_PASSWORD without user',
      env: { DASHBOARD_PASSWORD: `${SECRET}-long` },
    },
    {
      name: 'DASHBOARD_PASSWORD too short (the secret is the whole value)',
      env: { DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'supersecret' },
    },
    {
      name: 'password inside a malformed DATABASE_URL',
      env: { DATABASE_URL: `mysql://user:${SECRET}@db/x` },
    },
    {
      name: 'password inside an unparseable DATABASE_URL',
      env: { DATABASE_URL: `postgres://user:${SECRET}@[bad` },
    },
    {
      name: 'password as a query parameter of DATABASE_URL',
      env: { DATABASE_URL: `mysql://db/x?password=${SECRET}` },
    },
    {
      name: 'password inside REDIS_URL with a wrong scheme',
      env: { REDIS_URL: `http://:${SECRET}@redis:6379` },
    },
    {
      name: 'password inside SMTP_URL with a wrong scheme',
      env: { SMTP_URL: `imap://u:${SECRET}@mail` },
    },
    {
      name: 'percent-encoded password inside SMTP_URL',
      env: { SMTP_URL: `imap://u:super%73ecretvalue@mail` },
    },
  ];

  it.each(cases)('$name', ({ env }) => {
    const list = problems(env);
    expect(list.length).toBeGreaterThan(0);
    const text = formatProblems(list) + JSON.stringify(list);
    expect(text).not.toContain('supersecret');
    for (const value of Object.values(env)) {
      if (value !== undefined) expect(text).not.toContain(value);
    }
  });

  it('redactedConfig masks every secret and keeps the rest', () => {
    const config = ok({
      DATABASE_URL: `postgres://overdue:${SECRET}1@db:5432/overdue?sslpassword=x&password=${SECRET}2`,
      REDIS_URL: `redis://:${SECRET}3@redis:6379`,
      SMTP_URL: `smtp://user:${SECRET}4@mail:25`,
      MAIL_FROM: 'billing@example.com',
      TWILIO_ACCOUNT_SID: SID,
      TWILIO_AUTH_TOKEN: `${SECRET}5`,
      TWILIO_FROM: '+14155550100',
      CONTROL_PLANE_URL: 'https://cp.example',
      CONTROL_PLANE_SECRET: `${SECRET}6-padding-padding-padding`,
      DASHBOARD_USER: 'ops',
      DASHBOARD_PASSWORD: `${SECRET}7`,
    });
    const text = JSON.stringify(redactedConfig(config));
    expect(text).not.toContain(SECRET);
    expect(text).toContain('db:5432');
    expect(text).toContain('redis:6379');
    expect(text).toContain(SID);
    expect(text).toContain('"user":"ops"');
  });

  it('redactUrl masks userinfo passwords and password query parameters', () => {
    expect(redactUrl('postgres://u:p%40ss@h:5432/db')).toBe('postgres://u:***@h:5432/db');
    expect(redactUrl('redis://:pw@h:6379')).toBe('redis://:***@h:6379');
    expect(redactUrl('redis://h:6379')).toBe('redis://h:6379');
    expect(redactUrl('postgres://h/db?password=pw&x=1')).toBe('postgres://h/db?password=***&x=1');
    expect(redactUrl('not a url //u:pw@h')).toBe('not a url //***@h');
  });

  it('the logger masks secrets by key and URL passwords by value', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger('info', sink);
    logger.info(
      {
        password: `${SECRET}a`,
        config: redactedConfig(ok({})),
        raw: {
          databaseUrl: `postgres://u:${SECRET}b@h/db`,
          controlPlane: { secret: `${SECRET}c` },
        },
        req: { headers: { authorization: `Basic ${SECRET}d`, cookie: `sid=${SECRET}e` } },
        res: { headers: { 'set-cookie': `sid=${SECRET}f` } },
        token: `${SECRET}g`,
      },
      'hello',
    );
    const text = lines.join('');
    expect(text).toContain('hello');
    expect(text).toContain('postgres://u:***@h/db');
    expect(text).not.toContain(SECRET);
  });
});

describe('durations', () => {
  const cases: { text: string; ms: number | undefined }[] = [
    { text: '500ms', ms: 500 },
    { text: '90s', ms: 90_000 },
    { text: '15m', ms: 900_000 },
    { text: '24h', ms: 86_400_000 },
    { text: '7d', ms: 604_800_000 },
    { text: '1h30m', ms: 5_400_000 },
    { text: '0s', ms: 0 },
    { text: '10', ms: undefined },
    { text: '1.5h', ms: undefined },
    { text: '-5m', ms: undefined },
    { text: '5 m', ms: undefined },
    { text: '5M', ms: undefined },
    { text: '1w', ms: undefined },
    { text: '', ms: undefined },
    { text: '99999999999999999d', ms: undefined },
  ];
  it.each(cases)('parseDuration($text) = $ms', ({ text, ms }) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('interval settings map to milliseconds', () => {
    const config = ok({
      SCAN_INTERVAL: '30s',
      PLAN_SCAN_INTERVAL: '1h',
      SHUTDOWN_TIMEOUT: '500ms',
      STUDIO_RELEASE_DELAY: '48h',
      STUDIO_RELEASE_WARNING: '90m',
      REVERT_NOTICE_WINDOW: '14d',
    });
    expect(config.scanIntervalMs).toBe(30_000);
    expect(config.planScanIntervalMs).toBe(3_600_000);
    expect(config.shutdownTimeoutMs).toBe(500);
    expect(config.rules.studioReleaseDelayMs).toBe(48 * 3_600_000);
    expect(config.rules.studioReleaseWarningMs).toBe(90 * 60_000);
    expect(config.rules.revertNoticeWindowMs).toBe(14 * 86_400_000);
  });

  it('zero durations are refused where a period is needed', () => {
    expect(names({ SCAN_INTERVAL: '0s', SHUTDOWN_TIMEOUT: '0ms' })).toEqual([
      'SHUTDOWN_TIMEOUT',
      'SCAN_INTERVAL',
    ]);
  });

  it('TRUST_PROXY: off, a hop count or proxy addresses; trusting every peer is refused', () => {
    expect(ok({}).http.trustProxy).toBe(false);
    expect(ok({ TRUST_PROXY: '2' }).http.trustProxy).toBe(2);
    expect(ok({ TRUST_PROXY: '10.0.0.5, 10.1.0.0/16,::1' }).http.trustProxy).toEqual([
      '10.0.0.5',
      '10.1.0.0/16',
      '::1',
    ]);
    for (const bad of ['true', '0', '11', 'proxy.local', '10.0.0.0/33', '10.0.0.1/x']) {
      expect(names({ TRUST_PROXY: bad })).toEqual(['TRUST_PROXY']);
    }
  });

  it('SUSPENSION_BREAKER: count/window with an optional share, or off; bad ones named', () => {
    expect(ok({ SUSPENSION_BREAKER: 'off' }).suspensionBreaker).toBeNull();
    expect(ok({ SUSPENSION_BREAKER: '50/1h' }).suspensionBreaker).toEqual({
      count: 50,
      windowMs: 3_600_000,
      sharePct: 0,
    });
    expect(ok({ SUSPENSION_BREAKER: '100/10m,0.5%' }).suspensionBreaker).toEqual({
      count: 100,
      windowMs: 600_000,
      sharePct: 0.5,
    });
    for (const bad of ['100', '100/10', '0/10m', '100/10m,1', '100/10m,101%', 'x/10m', '100/0s']) {
      const found = problems({ SUSPENSION_BREAKER: bad });
      expect(found.map((p) => p.name)).toEqual(['SUSPENSION_BREAKER']);
      expect(found[0]?.message).toMatch(/count|window|share|off, or/);
    }
  });

  it('reminder intervals: local-day or a fixed window', () => {
    const config = ok({
      LOW_BALANCE_REMINDER_INTERVAL: '12h',
      OVERDUE_REMINDER_INTERVAL: 'local-day',
    });
    expect(config.rules.lowBalanceReminder).toEqual({ kind: 'every', ms: 12 * 3_600_000 });
    expect(config.rules.overdueReminder).toEqual({ kind: 'local-day' });
    expect(
      names({ LOW_BALANCE_REMINDER_INTERVAL: 'daily', OVERDUE_REMINDER_INTERVAL: '0h' }),
    ).toEqual(['LOW_BALANCE_REMINDER_INTERVAL', 'OVERDUE_REMINDER_INTERVAL']);
  });

  it('protection quota: amount, duration, both or none', () => {
    const cases: { env: Env; quota: { amountMinor: number | null; durationMs: number | null } }[] =
      [
        { env: {}, quota: { amountMinor: 5_000, durationMs: null } },
        { env: { PROTECTION_AMOUNT_MINOR: '0' }, quota: { amountMinor: 0, durationMs: null } },
        {
          env: { PROTECTION_AMOUNT_MINOR: 'none', PROTECTION_DURATION: '3d' },
          quota: { amountMinor: null, durationMs: 3 * 86_400_000 },
        },
        {
          env: { PROTECTION_AMOUNT_MINOR: '20000', PROTECTION_DURATION: '72h' },
          quota: { amountMinor: 20_000, durationMs: 72 * 3_600_000 },
        },
        {
          env: { PROTECTION_AMOUNT_MINOR: 'none', PROTECTION_DURATION: 'none' },
          quota: { amountMinor: null, durationMs: null },
        },
      ];
    for (const c of cases) expect(ok(c.env).rules.defaultProtection).toEqual(c.quota);
    expect(names({ PROTECTION_DURATION: '3 days' })).toEqual(['PROTECTION_DURATION']);
  });

  it('database timeouts: a duration up to 24h, or none', () => {
    const config = ok({ DB_STATEMENT_TIMEOUT: '5m', DB_IDLE_IN_TRANSACTION_TIMEOUT: 'none' });
    expect(config.dbStatementTimeoutMs).toBe(300_000);
    expect(config.dbIdleInTransactionTimeoutMs).toBeNull();
    expect(ok({ DB_STATEMENT_TIMEOUT: '24h' }).dbStatementTimeoutMs).toBe(86_400_000);
    expect(names({ DB_STATEMENT_TIMEOUT: '25h', DB_IDLE_IN_TRANSACTION_TIMEOUT: '0s' })).toEqual([
      'DB_STATEMENT_TIMEOUT',
      'DB_IDLE_IN_TRANSACTION_TIMEOUT',
    ]);
    expect(names({ DB_STATEMENT_TIMEOUT: '60' })).toEqual(['DB_STATEMENT_TIMEOUT']);
  });

  it('plan expiry reminders: sorted longest first, deduped, or none', () => {
    expect(ok({ PLAN_EXPIRY_REMINDERS: '1d, 7d,1d,12h' }).rules.planExpiryReminderMs).toEqual([
      7 * 86_400_000,
      86_400_000,
      12 * 3_600_000,
    ]);
    expect(ok({ PLAN_EXPIRY_REMINDERS: 'none' }).rules.planExpiryReminderMs).toEqual([]);
    expect(names({ PLAN_EXPIRY_REMINDERS: '7d,soon' })).toEqual(['PLAN_EXPIRY_REMINDERS']);
  });
});

describe('plan alert thresholds', () => {
  const good: { text: string; thresholds: unknown[] }[] = [
    {
      text: '20%,5%',
      thresholds: [
        { kind: 'percent', percent: 20 },
        { kind: 'percent', percent: 5 },
      ],
    },
    {
      text: '50%, 500, 2.5%',
      thresholds: [
        { kind: 'percent', percent: 50 },
        { kind: 'units', units: 500 },
        { kind: 'percent', percent: 2.5 },
      ],
    },
    { text: '100%', thresholds: [{ kind: 'percent', percent: 100 }] },
    { text: '10%,10%', thresholds: [{ kind: 'percent', percent: 10 }] },
    { text: 'none', thresholds: [] },
  ];
  it.each(good)('accepts $text', ({ text, thresholds }) => {
    expect(ok({ PLAN_ALERT_THRESHOLDS: text }).rules.planThresholds).toEqual(thresholds);
  });

  const bad = ['0%', '101%', '-5%', '0', '2.5', 'twenty', '20 %', ','];
  it.each(bad)('refuses %s', (text) => {
    expect(names({ PLAN_ALERT_THRESHOLDS: text })).toEqual(['PLAN_ALERT_THRESHOLDS']);
  });
});

describe('quiet hours', () => {
  const good: { text: string; startMinute: number; endMinute: number }[] = [
    { text: '22:00-08:00', startMinute: 1320, endMinute: 480 },
    { text: '00:00-06:30', startMinute: 0, endMinute: 390 },
    { text: '13:15-14:45', startMinute: 795, endMinute: 885 },
    { text: '23:59-00:00', startMinute: 1439, endMinute: 0 },
    { text: 'off', startMinute: 0, endMinute: 0 },
  ];
  it.each(good)('accepts $text', ({ text, startMinute, endMinute }) => {
    expect(ok({ QUIET_HOURS: text }).rules.quietHours).toEqual({ startMinute, endMinute });
  });

  const bad = [
    '22-08',
    '24:00-08:00',
    '22:60-08:00',
    '8:00-9:00',
    '22:00 - 08:00',
    '08:00-08:00',
    'on',
  ];
  it.each(bad)('refuses %s', (text) => {
    expect(names({ QUIET_HOURS: text })).toEqual(['QUIET_HOURS']);
  });
});

describe('lists and flags', () => {
  it('LIVE_PRODUCTS is a trimmed, deduped comma list', () => {
    expect(ok({ LIVE_PRODUCTS: 'live, live-pro ,live' }).rules.liveProducts).toEqual([
      'live',
      'live-pro',
    ]);
  });

  const bools: { text: string; value: boolean }[] = [
    { text: 'true', value: true },
    { text: '1', value: true },
    { text: 'yes', value: true },
    { text: 'false', value: false },
    { text: '0', value: false },
    { text: 'off', value: false },
  ];
  it.each(bools)('DEMO=$text is $value', ({ text, value }) => {
    expect(ok({ DEMO: text }).demo).toBe(value);
  });

  it('DEMO on a public HOST is allowed with dashboard credentials', () => {
    const config = ok({
      DEMO: 'true',
      HOST: '0.0.0.0',
      DASHBOARD_USER: 'ops',
      DASHBOARD_PASSWORD: 'long-enough-password',
    });
    expect(config.demo).toBe(true);
  });

  it('Twilio with a sender number and no messaging service', () => {
    const config = ok({
      TWILIO_ACCOUNT_SID: SID,
      TWILIO_AUTH_TOKEN: 't0ken',
      TWILIO_FROM: '+8613800138000',
    });
    expect(config.sms).toMatchObject({ from: '+8613800138000', messagingServiceSid: null });
  });
});
