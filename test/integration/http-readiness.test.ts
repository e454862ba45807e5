import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { insertNotification } from '../../src/adapters/db/daemon-writers';
import { SCHEDULER_IDS } from '../../src/daemon';
import { buildHttpServer } from '../../src/http/server';
import { metrics } from '../../src/observability/metrics';
import { startOutageHarness, type OutageHarness } from '../support/outage-harness';

/**
 * /readyz and /metrics against a private Redis this file starts on a spare port and then stops
 * (never the shared one), so a Redis outage can be observed.
 */

const OPS = { user: 'ops', password: 'ops-password-123456' };
const asOps = {
  authorization: `Basic ${Buffer.from(`${OPS.user}:${OPS.password}`).toString('base64')}`,
};

let h: OutageHarness;
let app: FastifyInstance;
let publicApp: FastifyInstance;

beforeAll(async () => {
  h = await startOutageHarness({
    DASHBOARD_USER: OPS.user,
    DASHBOARD_PASSWORD: OPS.password,
  });
  app = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
  const daemon = h.daemon;
  publicApp = await buildHttpServer({
    daemon: { ...daemon, ctx: { ...daemon.ctx, config: { ...h.config, metricsPublic: true } } },
    logger: pino({ level: 'silent' }),
  });
  await upsertAccount(h.t.db, { id: 'acct-m', currency: 'USD' });
  for (const [key, channel] of [
    ['n-1', 'email'],
    ['n-2', 'email'],
    ['n-3', 'sms'],
  ] as const) {
    await insertNotification(h.t.db, {
      dedupeKey: key,
      accountId: 'acct-m',
      channel,
      template: 'low-balance',
      locale: 'en',
      recipient: channel === 'email' ? 'a@example.com' : '+14155550100',
      params: {},
    });
  }
});

afterAll(async () => {
  await app?.close();
  await publicApp?.close();
  await h?.stop();
}, 60_000);

describe('health, readiness and metrics', () => {
  it('/healthz answers without credentials', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
  });

  it('/metrics needs credentials unless METRICS_PUBLIC', async () => {
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    expect((await publicApp.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
  });

  it('ready with everything up; metrics from the database, Redis and the jobs', async () => {
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    // The daemon's own jobs record into the same counters: compare before and after.
    const scrape = async () =>
      (await app.inject({ method: 'GET', url: '/metrics', headers: asOps })).body;
    const value = (text: string, series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    };
    const series = {
      decisions: 'overdue_decisions_total{kind="suspend-services"}',
      effects: 'overdue_effects_total{op="suspend",outcome="applied"}',
      scans: 'overdue_scan_duration_seconds_count{scan="balance"}',
      scanSum: 'overdue_scan_duration_seconds_sum{scan="balance"}',
    };
    const before = await scrape();
    metrics.evaluated('evaluated', ['suspend-services', 'overdue-reminder']);
    metrics.effect('suspend', 'applied');
    metrics.scanFinished('balance', 1_234, 17);
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: asOps });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.body;
    expect(text).toContain('overdue_dependency_up{dependency="redis"} 1');
    expect(text).toContain('overdue_dependency_up{dependency="postgres"} 1');
    expect(text).toMatch(/overdue_queue_jobs\{queue="scan",state="waiting"\} \d+/);
    expect(text).toContain('overdue_notifications_24h{channel="email",status="pending"} 2');
    expect(text).toContain('overdue_notifications_24h{channel="sms",status="pending"} 1');
    expect(value(text, series.decisions)).toBe(value(before, series.decisions) + 1);
    expect(value(text, series.effects)).toBe(value(before, series.effects) + 1);
    // The daemon's own balance scans record into this series too, and one may finish between
    // the two scrapes: at least the one recorded here.
    expect(value(text, series.scans)).toBeGreaterThanOrEqual(value(before, series.scans) + 1);
    expect(value(text, series.scanSum)).toBeGreaterThanOrEqual(
      value(before, series.scanSum) + 1.234 - 1e-9,
    );
    expect(text).toContain(
      `overdue_job_schedulers_present{scheduler="${SCHEDULER_IDS.balance}"} 1`,
    );
    expect(text).toContain('overdue_studio_releases_late 0');
  });

  it('a missing scheduler makes the daemon not ready', async () => {
    await h.daemon.ctx.queues.byName.scan.removeJobScheduler(SCHEDULER_IDS.plans);
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect((JSON.parse(res.body) as { failed: string[] }).failed).toEqual(['schedulers']);
    await h.daemon.ensureSchedulers();
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('a stopped Redis shows in /readyz (503, redis) and /metrics (redis 0)', async () => {
    await h.privateRedis.stop();
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    const body = JSON.parse(ready.body) as { failed: string[] };
    expect(body.failed).toContain('redis');
    expect(body.failed).not.toContain('postgres');
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: asOps });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('overdue_dependency_up{dependency="redis"} 0');
    expect(res.body).toContain('overdue_dependency_up{dependency="postgres"} 1');
    expect(res.body).toContain('overdue_scrape_errors{part="queues"} 1');
    // Values that live in PostgreSQL are still there.
    expect(res.body).toContain('overdue_notifications_24h{channel="sms",status="pending"} 1');
  });
});
