import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { isLoopback, loadConfig, redactedConfig, type Config } from '../../src/config';
import {
  actorName,
  createAuthenticator,
  FailureThrottle,
  hostAllowed,
  sameOrigin,
} from '../../src/http/auth';

const TOKEN = 'tok-0123456789abcdef0123456789abcdef';

function config(env: Record<string, string>): Config {
  const result = loadConfig(env);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

function problems(env: Record<string, string>): string[] {
  const result = loadConfig(env);
  return result.ok ? [] : result.problems.map((p) => p.name);
}

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

const full = config({
  DASHBOARD_USER: 'ops',
  DASHBOARD_PASSWORD: 'ops-password-123456',
  DASHBOARD_VIEWER_USER: 'viewer',
  DASHBOARD_VIEWER_PASSWORD: 'viewer-password-123456',
  API_TOKENS: `billing=${TOKEN}, ci=${TOKEN}x`,
});

describe('authenticator', () => {
  const auth = createAuthenticator(full);
  const cases: { name: string; header: string | undefined; bearer?: boolean; want: unknown }[] = [
    {
      name: 'operator',
      header: basic('ops', 'ops-password-123456'),
      want: { name: 'ops', role: 'operator', via: 'basic' },
    },
    {
      name: 'viewer',
      header: basic('viewer', 'viewer-password-123456'),
      want: { name: 'viewer', role: 'viewer', via: 'basic' },
    },
    {
      name: 'viewer name, operator password',
      header: basic('viewer', 'ops-password-123456'),
      want: null,
    },
    {
      name: 'password with a colon part',
      header: basic('ops', 'ops-password-123456:x'),
      want: null,
    },
    { name: 'empty', header: basic('', ''), want: null },
    { name: 'missing', header: undefined, want: null },
    { name: 'not base64', header: 'Basic !!!', want: null },
    {
      name: 'token',
      header: `Bearer ${TOKEN}`,
      bearer: true,
      want: { name: 'billing', role: 'operator', via: 'bearer' },
    },
    {
      name: 'second token',
      header: `Bearer ${TOKEN}x`,
      bearer: true,
      want: { name: 'ci', role: 'operator', via: 'bearer' },
    },
    {
      name: 'token where only Basic is allowed',
      header: `Bearer ${TOKEN}`,
      bearer: false,
      want: null,
    },
    { name: 'token prefix', header: `Bearer ${TOKEN.slice(0, -1)}`, bearer: true, want: null },
  ];
  it.each(cases)('$name', ({ header, bearer, want }) => {
    expect(auth.authenticate(header, bearer ?? true)).toEqual(want);
  });

  it('nothing configured: nobody gets in, and it says so', () => {
    const none = createAuthenticator(config({}));
    expect(none.configured).toBe(false);
    expect(none.authenticate(basic('ops', 'x'), true)).toBeNull();
  });

  it('demo mode without credentials lets everyone in as the demo operator', () => {
    const demo = createAuthenticator(config({ DEMO: 'true' }));
    expect(demo.open).toBe(true);
    expect(demo.authenticate(undefined, false)).toEqual({
      name: 'demo',
      role: 'operator',
      via: 'demo',
    });
  });

  it('actor names fit the job catalog origin (80 characters)', () => {
    expect(actorName({ name: 'ops', role: 'operator', via: 'basic' })).toBe('operator:ops');
    expect(actorName({ name: 'x'.repeat(200), role: 'operator', via: 'basic' })).toHaveLength(80);
  });
});

describe('same-origin check', () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as FastifyRequest;
  it.each<{ name: string; headers: Record<string, string>; ok: boolean }>([
    { name: 'no Origin or Referer (curl)', headers: { host: 'a.example' }, ok: true },
    {
      name: 'same origin',
      headers: { host: 'a.example:8080', origin: 'http://a.example:8080' },
      ok: true,
    },
    {
      name: 'other origin',
      headers: { host: 'a.example', origin: 'https://b.example' },
      ok: false,
    },
    {
      name: 'other port',
      headers: { host: 'a.example:8080', origin: 'http://a.example:9090' },
      ok: false,
    },
    { name: 'null origin', headers: { host: 'a.example', origin: 'null' }, ok: false },
    {
      name: 'same referer',
      headers: { host: 'a.example', referer: 'http://a.example/admin/queues' },
      ok: true,
    },
    {
      name: 'other referer',
      headers: { host: 'a.example', referer: 'http://b.example/x' },
      ok: false,
    },
    { name: 'garbage origin', headers: { host: 'a.example', origin: 'not a url' }, ok: false },
  ])('$name', ({ headers, ok }) => {
    expect(sameOrigin(req(headers))).toBe(ok);
  });
});

describe('configuration of the HTTP surface', () => {
  it('parses tokens, the viewer and METRICS_PUBLIC', () => {
    expect(full.apiTokens).toEqual([
      { name: 'billing', scope: 'operator', token: TOKEN },
      { name: 'ci', scope: 'operator', token: `${TOKEN}x` },
    ]);
    expect(
      config({ API_TOKENS: `billing:ingest:${TOKEN}, reports:read:${TOKEN}y, ops=${TOKEN}z` })
        .apiTokens,
    ).toEqual([
      { name: 'billing', scope: 'ingest', token: TOKEN },
      { name: 'reports', scope: 'read', token: `${TOKEN}y` },
      { name: 'ops', scope: 'operator', token: `${TOKEN}z` },
    ]);
    expect(full.dashboardViewer).toEqual({ user: 'viewer', password: 'viewer-password-123456' });
    expect(config({ METRICS_PUBLIC: 'true' }).metricsPublic).toBe(true);
  });

  it.each<{ name: string; env: Record<string, string>; bad: string[] }>([
    { name: 'token too short', env: { API_TOKENS: 'a=short' }, bad: ['API_TOKENS'] },
    { name: 'token without name', env: { API_TOKENS: TOKEN }, bad: ['API_TOKENS'] },
    { name: 'repeated name', env: { API_TOKENS: `a=${TOKEN},a=${TOKEN}y` }, bad: ['API_TOKENS'] },
    { name: 'repeated token', env: { API_TOKENS: `a=${TOKEN},b=${TOKEN}` }, bad: ['API_TOKENS'] },
    { name: 'unknown scope', env: { API_TOKENS: `a:admin:${TOKEN}` }, bad: ['API_TOKENS'] },
    {
      name: 'scoped and old form share a name',
      env: { API_TOKENS: `a:read:${TOKEN},a=${TOKEN}y` },
      bad: ['API_TOKENS'],
    },
    {
      name: 'ALLOWED_HOSTS with a path',
      env: { ALLOWED_HOSTS: 'a.example/x' },
      bad: ['ALLOWED_HOSTS'],
    },
    {
      name: 'header timeout longer than the request timeout',
      env: { HTTP_HEADERS_TIMEOUT: '1m', HTTP_REQUEST_TIMEOUT: '30s' },
      bad: ['HTTP_HEADERS_TIMEOUT'],
    },
    {
      name: 'viewer without password',
      env: { DASHBOARD_VIEWER_USER: 'v' },
      bad: ['DASHBOARD_VIEWER_PASSWORD'],
    },
    {
      name: 'viewer password without user',
      env: { DASHBOARD_VIEWER_PASSWORD: 'viewer-password-123456' },
      bad: ['DASHBOARD_VIEWER_USER'],
    },
    {
      name: 'viewer named like the operator',
      env: {
        DASHBOARD_USER: 'ops',
        DASHBOARD_PASSWORD: 'ops-password-123456',
        DASHBOARD_VIEWER_USER: 'ops',
        DASHBOARD_VIEWER_PASSWORD: 'viewer-password-123456',
      },
      bad: ['DASHBOARD_VIEWER_USER'],
    },
    {
      name: 'METRICS_PUBLIC not a boolean',
      env: { METRICS_PUBLIC: 'sure' },
      bad: ['METRICS_PUBLIC'],
    },
  ])('$name', ({ env, bad }) => {
    expect(problems(env)).toEqual(bad);
  });

  it('a bad token is not echoed, and secrets are masked in the logged config', () => {
    const result = loadConfig({ API_TOKENS: 'svc=short-secret-value' });
    expect(JSON.stringify(result)).not.toContain('short-secret-value');
    const shown = JSON.stringify(redactedConfig(full));
    expect(shown).not.toContain(TOKEN);
    expect(shown).not.toContain('viewer-password-123456');
  });

  it('CONTROL_PLANE_URL, TWILIO_API_BASE_URL and the callback URL are logged masked', () => {
    const withUrls = config({
      CONTROL_PLANE_URL: 'https://cp:cp-url-password@control.example.com/hook',
      CONTROL_PLANE_SECRET: `${TOKEN}cp`,
      TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`,
      TWILIO_AUTH_TOKEN: 'twilio-token-value',
      TWILIO_FROM: '+14155550100',
      TWILIO_API_BASE_URL: 'https://tw:tw-url-password@sms.example.com',
      SMS_STATUS_CALLBACK_URL: 'https://cb:cb-url-password@worker.example.com/v1/callbacks/sms',
    });
    const shown = JSON.stringify(redactedConfig(withUrls));
    for (const secret of ['cp-url-password', 'tw-url-password', 'cb-url-password']) {
      expect(shown).not.toContain(secret);
    }
    expect(shown).toContain('control.example.com');
    const bad = loadConfig({ CONTROL_PLANE_URL: 'https://u:cp-url-password@' });
    expect(JSON.stringify(bad)).not.toContain('cp-url-password');
  });
});

describe('loopback is decided on a parsed address', () => {
  it.each<[string, boolean]>([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['127.evil.example', false],
    ['127.0.0.1.nip.io', false],
    ['0.0.0.0', false],
    ['10.0.0.1', false],
    ['::', false],
  ])('%s → %s', (host, want) => {
    expect(isLoopback(host)).toBe(want);
  });

  it('DEMO without credentials on HOST=127.evil.example is refused', () => {
    expect(problems({ DEMO: 'true', HOST: '127.evil.example' })).toEqual(['HOST']);
  });
});

describe('allowed hosts', () => {
  it('defaults to the loopback names on a loopback HOST and to any host otherwise', () => {
    expect(config({}).http.allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    expect(config({ HOST: '0.0.0.0' }).http.allowedHosts).toBeNull();
    expect(config({ ALLOWED_HOSTS: '*' }).http.allowedHosts).toBeNull();
  });
  it.each<[string | undefined, readonly string[] | null, boolean]>([
    ['localhost:8080', ['localhost'], true],
    ['LOCALHOST', ['localhost'], true],
    ['worker.example.com:8443', ['worker.example.com:8443'], true],
    ['worker.example.com:9999', ['worker.example.com:8443'], false],
    ['evil.example', ['localhost'], false],
    [undefined, ['localhost'], false],
    ['anything', null, true],
  ])('%s in %j → %s', (host, allowed, want) => {
    expect(hostAllowed(host, allowed)).toBe(want);
  });
});

describe('failed-login throttle', () => {
  it('blocks an address after the limit until its minute is over', () => {
    let now = 1_000_000;
    const t = new FailureThrottle(3, () => now);
    for (let i = 0; i < 3; i++) {
      expect(t.retryAfterMs('a')).toBe(0);
      t.fail('a');
    }
    expect(t.retryAfterMs('a')).toBe(60_000);
    expect(t.retryAfterMs('b')).toBe(0);
    now += 59_000;
    expect(t.retryAfterMs('a')).toBe(1_000);
    now += 1_000;
    expect(t.retryAfterMs('a')).toBe(0);
  });
});
