/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { httpControlPlane } from '../../src/adapters/control-plane/control-plane';
import { createLogger } from '../../src/logger';
import { jobRegistry } from '../../src/observability/metrics';
import { SCHEDULER_IDS } from '../../src/daemon';
import { buildHttpServer } from '../../src/http/server';
import { startHarness, type Harness } from '../support/daemon';

/**
 * The HTTP surface as an attacker or a careless client would probe it, against the real server
 * (listening on a port where sockets matter, `inject` elsewhere), a real daemon, PostgreSQL and
 * Redis. Each test is named after the weakness it closes.
 */

const OPS = { user: 'ops', password: 'ops-password-123456' };
const VIEWER = { user: 'viewer', password: 'viewer-password-123456' };
const INGEST = 'ingest-token-0123456789abcdef0123456789';
const READ = 'read-token-0123456789abcdef0123456789ab';
const LEGACY = 'legacy-token-0123456789abcdef0123456789';
const TWILIO_TOKEN = 'twilio-auth-token-0123456789abcdef';

const basic = (u: { user: string; password: string }) =>
  `Basic ${Buffer.from(`${u.user}:${u.password}`).toString('base64')}`;
const asOps = { authorization: basic(OPS) };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let h: Harness;
let app: FastifyInstance;
let base: string;
let port: number;
const logLines: Record<string, unknown>[] = [];

function captureLogger() {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

beforeAll(async () => {
  h = await startHarness({
    DASHBOARD_USER: OPS.user,
    DASHBOARD_PASSWORD: OPS.password,
    DASHBOARD_VIEWER_USER: VIEWER.user,
    DASHBOARD_VIEWER_PASSWORD: VIEWER.password,
    API_TOKENS: `billing:ingest:${INGEST},reports:read:${READ},script=${LEGACY}`,
    TWILIO_ACCOUNT_SID: `AC${'0'.repeat(32)}`,
    TWILIO_AUTH_TOKEN: TWILIO_TOKEN,
    TWILIO_FROM: '+14155550100',
    SMS_STATUS_CALLBACK_URL: 'https://worker.example.com/v1/callbacks/sms',
    HTTP_HEADERS_TIMEOUT: '1s',
    HTTP_REQUEST_TIMEOUT: '2s',
    HTTP_MAX_CONNECTIONS: '30',
  });
  app = await buildHttpServer({ daemon: h.daemon, logger: captureLogger() });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  port = Number(new URL(base).port);
}, 60_000);

afterAll(async () => {
  await app?.close();
  await h?.stop();
});

/** Opens a raw socket to the server; resolves once connected. */
function open(): Promise<{ socket: Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now())));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

describe('server.ts: timeouts and a connection cap', () => {
  it('20 connections sending 1 byte every 500 ms are cut off by the header timeout', async () => {
    const started = Date.now();
    const conns = await Promise.all(Array.from({ length: 20 }, () => open()));
    const head = 'POST /v1/callbacks/sms HTTP/1.1\r\nHost: localhost\r\nX-Slow: ';
    const timers = conns.map(({ socket }) => {
      let i = 0;
      return setInterval(() => {
        if (!socket.destroyed) socket.write(head[i++ % head.length] ?? 'a');
      }, 500);
    });
    try {
      const closedAt = await Promise.all(conns.map((c) => c.closed));
      // HTTP_HEADERS_TIMEOUT=1s, checked every 250 ms: all gone well before Node's 30 s check.
      for (const at of closedAt) expect(at - started).toBeLessThan(5_000);
    } finally {
      timers.forEach(clearInterval);
    }
  }, 20_000);

  it('connections beyond HTTP_MAX_CONNECTIONS are closed when accepted', async () => {
    const conns = await Promise.all(Array.from({ length: 40 }, () => open()));
    const closedSoon = await Promise.all(
      conns.map((c) =>
        Promise.race([c.closed.then(() => true), new Promise((r) => setTimeout(r, 500, false))]),
      ),
    );
    expect(closedSoon.filter(Boolean).length).toBeGreaterThanOrEqual(10);
    conns.forEach((c) => c.socket.destroy());
    await Promise.all(conns.map((c) => c.closed));
    // Still serving afterwards.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  }, 20_000);
});

describe('sms-callback.ts: form bodies only, 64 KB, refusals counted and logged once a minute', () => {
  it('JSON and text bodies are refused with 415 before the signature check', async () => {
    for (const [type, body] of [
      ['application/json', JSON.stringify({ MessageSid: 'x', pad: 'y'.repeat(500_000) })],
      ['text/plain', 'z'.repeat(500_000)],
    ] as const) {
      const res = await fetch(`${base}/v1/callbacks/sms`, {
        method: 'POST',
        headers: { 'content-type': type },
        body,
      });
      expect(res.status).toBe(415);
    }
  });

  it('a form body over 64 KB is refused with 413', async () => {
    const res = await fetch(`${base}/v1/callbacks/sms`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `MessageSid=SM1&pad=${'a'.repeat(70 * 1024)}`,
    });
    expect(res.status).toBe(413);
  });

  it('200 bad calls: 200 counted in metrics, one log line', async () => {
    const metric = async () => {
      const text = await (await fetch(`${base}/metrics`, { headers: asOps })).text();
      const line = text
        .split('\n')
        .find((l) => l.startsWith('overdue_http_refused_total{route="sms-callback",status="403"}'));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    const before = await metric();
    const linesBefore = logLines.filter((l) => String(l.msg).startsWith('callback refused')).length;
    for (let i = 0; i < 200; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/callbacks/sms',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-twilio-signature': 'forged',
        },
        payload: 'MessageSid=SM0123&MessageStatus=delivered',
      });
      expect(res.statusCode).toBe(403);
    }
    expect((await metric()) - before).toBe(200);
    const lines = logLines.filter((l) => String(l.msg).startsWith('callback refused')).length;
    // The earlier tests' refusals may have written the minute's line already.
    expect(lines - linesBefore).toBeLessThanOrEqual(1);
    expect(lines).toBe(1);
  });
});

describe('dashboard: clickjacking and page headers', () => {
  it('the dashboard page forbids framing and carries a CSP, nosniff and Referrer-Policy', async () => {
    const res = await fetch(`${base}/admin/queues`, { headers: asOps });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
    const api = await fetch(`${base}/v1/openapi.json`, { headers: asOps });
    expect(api.headers.get('x-frame-options')).toBe('DENY');
    expect(api.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  });
});

describe('auth.ts: scoped tokens', () => {
  const hold = { reason: 'test', confirmAccountId: 'acct-x' };
  it('the ingest token reaches /v1/ingest/* only; 403 elsewhere', async () => {
    const ingest = await app.inject({
      method: 'POST',
      url: '/v1/ingest/accounts',
      headers: bearer(INGEST),
      payload: { items: [] },
    });
    expect([200, 400]).toContain(ingest.statusCode);
    for (const [method, url] of [
      ['POST', '/v1/services/svc-1/hold'],
      ['POST', '/v1/studio-instances/st-1/release'],
      ['GET', '/v1/accounts/acct-x/bills'],
      ['GET', '/metrics'],
    ] as const) {
      const res = await app.inject({
        method,
        url,
        headers: bearer(INGEST),
        ...(method === 'POST' ? { payload: hold } : {}),
      });
      expect(res.statusCode, `${method} ${url}`).toBe(403);
    }
  });

  it('the read token reads but cannot change anything', async () => {
    const read = await app.inject({
      method: 'GET',
      url: '/v1/accounts/acct-x/bills',
      headers: bearer(READ),
    });
    expect(read.statusCode).not.toBe(403);
    expect(read.statusCode).not.toBe(401);
    for (const url of ['/v1/services/svc-1/hold', '/v1/ingest/accounts']) {
      const res = await app.inject({ method: 'POST', url, headers: bearer(READ), payload: {} });
      expect(res.statusCode, url).toBe(403);
    }
  });

  it('the old name=token form is operator scope', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/services/svc-missing/hold',
      headers: bearer(LEGACY),
      payload: hold,
    });
    expect([400, 404]).toContain(res.statusCode);
  });
});

describe('auth.ts: failed logins throttled per client address', () => {
  it('300 wrong passwords in a burst: 10 answers 401, then 429 with Retry-After', async () => {
    // A server of its own: the throttle must not lock the other tests' address out.
    const own = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
    try {
      const statuses: number[] = [];
      let retryAfter: string | undefined;
      for (let i = 0; i < 300; i++) {
        const res = await own.inject({
          method: 'GET',
          url: '/v1/openapi.json',
          remoteAddress: '203.0.113.7',
          headers: { authorization: basic({ user: 'ops', password: `guess-${i}` }) },
        });
        statuses.push(res.statusCode);
        if (res.statusCode === 429) retryAfter = String(res.headers['retry-after']);
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(10);
      const refused = jobRegistry.getSingleMetric('overdue_http_refused_total');
      const values = (await refused?.get())?.values ?? [];
      const of = (status: string) =>
        values.find((v) => v.labels.route === 'auth' && v.labels.status === status)?.value ?? 0;
      expect(of('429')).toBeGreaterThanOrEqual(290);
      expect(of('401')).toBeGreaterThanOrEqual(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(290);
      expect(Number(retryAfter)).toBeGreaterThan(0);
      expect(Number(retryAfter)).toBeLessThanOrEqual(60);
      // Blocked address: even the right password waits; another address is unaffected.
      const right = { authorization: basic(OPS) };
      const blocked = await own.inject({
        method: 'GET',
        url: '/v1/openapi.json',
        remoteAddress: '203.0.113.7',
        headers: right,
      });
      expect(blocked.statusCode).toBe(429);
      const other = await own.inject({
        method: 'GET',
        url: '/v1/openapi.json',
        remoteAddress: '203.0.113.8',
        headers: right,
      });
      expect(other.statusCode).toBe(200);
    } finally {
      await own.close();
    }
  });

  it('behind a trusted proxy (TRUST_PROXY) the client it names is throttled, not the proxy', async () => {
    const serverWith = (trustProxy: false | string[]) =>
      buildHttpServer({
        daemon: {
          ...h.daemon,
          ctx: { ...h.daemon.ctx, config: { ...h.config, http: { ...h.config.http, trustProxy } } },
        },
        logger: pino({ level: 'silent' }),
      });
    const attempt = (server: FastifyInstance, client: string, password: string) =>
      server.inject({
        method: 'GET',
        url: '/v1/openapi.json',
        remoteAddress: '10.0.0.5',
        headers: {
          authorization: basic({ user: 'ops', password }),
          'x-forwarded-for': client,
        },
      });
    const trusted = await serverWith(['10.0.0.5']);
    try {
      for (let i = 0; i < 11; i++) await attempt(trusted, '198.51.100.1', `guess-${i}`);
      expect((await attempt(trusted, '198.51.100.1', OPS.password)).statusCode).toBe(429);
      // Another client behind the same proxy still logs in.
      expect((await attempt(trusted, '198.51.100.2', OPS.password)).statusCode).toBe(200);
    } finally {
      await trusted.close();
    }
    // Off (the default): the header is not believed, the proxy's address is the client's.
    const untrusted = await serverWith(false);
    try {
      for (let i = 0; i < 11; i++) await attempt(untrusted, `198.51.100.${i}`, `guess-${i}`);
      expect((await attempt(untrusted, '198.51.100.99', OPS.password)).statusCode).toBe(429);
    } finally {
      await untrusted.close();
    }
  });
});

describe('dashboard scheduler edit', () => {
  const edit = (id: string, body: unknown) =>
    app.inject({
      method: 'PATCH',
      url: `/admin/queues/api/queues/scan/job-schedulers/${id}`,
      headers: asOps,
      payload: body as Record<string, unknown>,
    });

  it('every: 1000 is refused like SCAN_INTERVAL=1000ms; a valid interval is accepted', async () => {
    const scan = h.daemon.ctx.queues.byName.scan;
    const before = await scan.getJobScheduler(SCHEDULER_IDS.balance);
    const refused = await edit(SCHEDULER_IDS.balance, { every: 1000 });
    expect(refused.statusCode).toBe(400);
    expect(JSON.parse(refused.body).issues[0].path).toBe('every');
    expect(JSON.parse(refused.body).message).toContain('SCAN_INTERVAL');
    expect((await scan.getJobScheduler(SCHEDULER_IDS.balance))?.every).toBe(before?.every);
    expect((await edit(SCHEDULER_IDS.plans, { every: 5_000 })).statusCode).toBe(400);
    expect((await edit(SCHEDULER_IDS.balance, { pattern: '* * * * * *' })).statusCode).toBe(400);
    const ok = await edit(SCHEDULER_IDS.balance, { every: 120_000 });
    expect(ok.statusCode).toBe(204);
    expect(Number((await scan.getJobScheduler(SCHEDULER_IDS.balance))?.every)).toBe(120_000);
  });
});

describe('dashboard Run now', () => {
  it("a scheduler's Run now adds a job whose data names the operator", async () => {
    const res = await app.inject({
      method: 'PUT',
      url: `/admin/queues/api/queues/scan/job-schedulers/${SCHEDULER_IDS.plans}/run`,
      headers: asOps,
    });
    expect(res.statusCode).toBe(200);
    const id = JSON.parse(res.body).job.id as string;
    const job = await h.daemon.ctx.queues.byName.scan.getJob(id);
    expect(job?.name).toBe('plan-scan');
    expect(job?.data).toMatchObject({ origin: 'operator:ops' });
  });
});

describe('/readyz, bull-board and 409s: no dependency text outside', () => {
  it('/readyz names the failed part, not the error', async () => {
    const scan = h.daemon.ctx.queues.byName.scan;
    await scan.removeJobScheduler(SCHEDULER_IDS.plans);
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = JSON.parse(res.body);
      expect(body.failed).toEqual(['schedulers']);
      expect(body.checks.schedulers.error).toBe('failed');
      expect(res.body).not.toContain(SCHEDULER_IDS.plans);
      expect(
        logLines.some(
          (l) => l.msg === 'readiness check failed' && String(l.error).includes('plan-scan'),
        ),
      ).toBe(true);
    } finally {
      await h.daemon.ensureSchedulers();
    }
  });
});

describe('Host header and loopback', () => {
  it('a foreign Host (DNS rebinding) gets 421 on a loopback server; loopback names pass', async () => {
    const evil = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { host: 'rebind.evil.example' },
    });
    expect(evil.statusCode).toBe(421);
    const trick = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { host: `127.evil.example:${port}` },
    });
    expect(trick.statusCode).toBe(421);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      const res = await app.inject({ method: 'GET', url: '/healthz', headers: { host } });
      expect(res.statusCode, host).toBe(200);
    }
  });
});

describe('src/config, control plane: URLs masked, redirects not followed', () => {
  async function listen(server: Server): Promise<string> {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('a 307 from the control plane is not followed: the signed body goes nowhere else', async () => {
    let elsewhere = 0;
    const other = createHttpServer((_req, res) => {
      elsewhere += 1;
      res.writeHead(200).end();
    });
    const otherUrl = await listen(other);
    const redirecting = createHttpServer((_req, res) => {
      res.writeHead(307, { location: `${otherUrl}/steal` }).end();
    });
    const url = await listen(redirecting);
    try {
      const cp = httpControlPlane({ url, secret: 's'.repeat(32), timeoutMs: 2_000 });
      const result = await cp.apply({
        op: 'suspend',
        accountId: 'acct-1',
        serviceId: 'svc-1',
        idempotencyKey: 'suspend-v1-svc-1-1',
        reason: 'overdue',
      });
      expect(result.ok).toBe(false);
      expect(result.ok ? '' : result.error).toMatch(/redirect/);
      expect(elsewhere).toBe(0);
    } finally {
      other.close();
      redirecting.close();
    }
  });

  it('a URL with a password is masked wherever it is logged under a url key', () => {
    const out: string[] = [];
    const log = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          out.push(chunk.toString());
          done();
        },
      }),
    );
    log.info({ url: 'https://u:url-secret-1@cp.example.com/x' }, 'calling');
    log.info({ controlPlane: { url: 'https://u:url-secret-2@cp.example.com/x' } }, 'config');
    log.info({ apiBaseUrl: 'https://u:url-secret-3@sms.example.com' }, 'sms');
    const text = out.join('');
    expect(text).not.toMatch(/url-secret-\d/);
    expect(text).toContain('cp.example.com');
  });
});

describe('409s name no constraint', () => {
  it('a unique violation answers a generic conflict; the constraint goes to the log', async () => {
    // No route lets a client reach a database rule today (each checks first); this one, on a
    // server built the same way, breaks one for real to see what the answer would say.
    const own = await buildHttpServer({ daemon: h.daemon, logger: captureLogger() });
    own.post('/probe/conflict', async () => {
      await upsertAccount(h.t.db, { id: 'acct-dup', currency: 'USD' });
      await h.t.db.execute(sql`insert into accounts (id, currency) values ('acct-dup', 'USD')`);
      return {};
    });
    try {
      const res = await own.inject({ method: 'POST', url: '/probe/conflict' });
      expect(res.statusCode).toBe(409);
      expect(res.body).not.toMatch(/pkey|accounts|constraint/i);
      expect(
        logLines.some(
          (l) =>
            l.msg === 'request refused by a database rule' && JSON.stringify(l).includes('pkey'),
        ),
      ).toBe(true);
    } finally {
      await own.close();
    }
  });
});

describe('dashboard Add job form', () => {
  it('each queue pre-fills a valid example; the scan hint is short', async () => {
    for (const queue of ['scan', 'evaluate', 'effects', 'notify-email', 'notify-sms']) {
      const res = await app.inject({
        method: 'GET',
        url: `/admin/queues/api/queues/${queue}/job-data-schema`,
        headers: asOps,
      });
      expect(res.statusCode, queue).toBe(200);
      const schema = JSON.parse(res.body);
      const example = schema.examples?.[0];
      expect(example, queue).toBeDefined();
      expect(res.body.length, queue).toBeLessThan(3_000);
      const name = (schema.title ?? schema.anyOf?.[0]?.title) as string;
      const added = await app.inject({
        method: 'POST',
        url: `/admin/queues/api/queues/${queue}/add`,
        headers: asOps,
        payload: { name, data: example },
      });
      // Examples name rows that do not exist here (404), but never fail the check (400).
      expect([200, 404], `${queue} ${name}: ${added.body}`).toContain(added.statusCode);
    }
  });

  it('a refused job answers the field and the reason', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/admin/queues/api/queues/evaluate/add',
      headers: asOps,
      payload: { name: 'evaluate-account', data: { accountId: '' } },
    });
    expect(res.statusCode).toBe(400);
    const body = JSON.parse(res.body);
    expect(body.message).toMatch(/^data\.accountId: /);
    expect(body.issues[0].path).toBe('data.accountId');
  });
});
