import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../../src/http/server';
import { waitFor } from '../support/daemon';
import { startOutageHarness, type OutageHarness } from '../support/outage-harness';

/**
 * A Redis outage as the log, the metrics and the dashboard show it, against a private Redis this
 * file starts on a spare port, stops and starts again (never the shared one).
 */

const VIEWER = { user: 'viewer', password: 'viewer-password-123456' };
const OPS = { user: 'ops', password: 'ops-password-123456' };
const basic = (u: { user: string; password: string }) =>
  `Basic ${Buffer.from(`${u.user}:${u.password}`).toString('base64')}`;

let h: OutageHarness;
let app: FastifyInstance;
const lines: Record<string, unknown>[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  }),
);
const count = (msg: string) => lines.filter((l) => l.msg === msg).length;

beforeAll(async () => {
  h = await startOutageHarness({
    DASHBOARD_USER: OPS.user,
    DASHBOARD_PASSWORD: OPS.password,
    DASHBOARD_VIEWER_USER: VIEWER.user,
    DASHBOARD_VIEWER_PASSWORD: VIEWER.password,
  });
  // The harness's daemon logs nowhere; this one logs into `lines`.
  await h.daemon.close();
  h.daemon = await h.start({ logger });
  app = await buildHttpServer({ daemon: h.daemon, logger });
  await app.ready();
}, 60_000);

afterAll(async () => {
  await app?.close();
  await h?.stop();
}, 60_000);

describe('Redis outage', () => {
  it('one line when lost, one when back, a gauge in metrics; the viewer sees no ioredis text', async () => {
    const gauge = async () => {
      const res = await app.inject({
        method: 'GET',
        url: '/metrics',
        headers: { authorization: basic(OPS) },
      });
      return /^overdue_redis_connected (\d)$/m.exec(res.body)?.[1];
    };
    expect(await gauge()).toBe('1');

    await h.privateRedis.stop();
    await waitFor(() => count('redis connection lost') > 0, 10_000, 'the lost line');
    // Workers and connections keep failing for a while: still one line, no "worker error" flood.
    await new Promise((r) => setTimeout(r, 6_000));
    expect(count('redis connection lost')).toBe(1);
    expect(count('worker error')).toBe(0);
    expect(count('redis connection error')).toBe(0);
    expect(await gauge()).toBe('0');

    const board = await app.inject({
      method: 'GET',
      url: '/admin/queues/api/queues',
      headers: { authorization: basic(VIEWER) },
    });
    expect(board.statusCode).toBe(500);
    expect(board.body).not.toMatch(/ECONNREFUSED|Connection is closed|max retries|127\.0\.0\.1/i);
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.body).not.toMatch(/ECONNREFUSED|Connection is closed|max retries|127\.0\.0\.1/i);

    await h.privateRedis.startServer();
    await waitFor(() => count('redis connection back') > 0, 15_000, 'the back line');
    expect(count('redis connection back')).toBe(1);
    expect(count('redis connection lost')).toBe(1);
    expect(await gauge()).toBe('1');
  }, 60_000);
});
