import Fastify, { type FastifyInstance } from 'fastify';
import type { Daemon } from '../daemon';
import type { Logger } from '../logger';
import { Api, apiErrorHandler } from './api';
import { createAuthenticator, guard, hostAllowed } from './auth';
import { isConsolePage, mountConsole } from './console/mount';
import { DASHBOARD_PATH, mountDashboard } from './dashboard';
import { registerHealth } from './health';
import { registerIngestRoutes } from './routes-ingest';
import { registerBreakerRoutes } from './routes-breaker';
import { mountSafetyPage, SAFETY_PATH } from './safety-page';
import { registerSafetyRoutes } from './routes-safety';
import { registerInquiryRoutes } from './routes-inquiry';
import { registerOperatorRoutes } from './routes-operator';
import { registerSmsCallback } from './sms-callback';

/**
 * The daemon's HTTP server (not listening: main.ts calls `.listen({ host, port })`).
 *
 * - /healthz, /readyz: no auth. /metrics: auth unless METRICS_PUBLIC=true.
 * - /admin, /admin/accounts[/:id]: the operator console (console/mount.ts); /admin/safety: the
 *   safety valves. Same authentication as the dashboard.
 * - /admin/queues: the bull-board dashboard, HTTP Basic (operator, or the read-only viewer);
 *   mounted only when a Basic account exists, or in demo mode.
 * - /v1/...: the JSON API (Basic or Bearer), OpenAPI document at /v1/openapi.json.
 * - /v1/callbacks/sms: Twilio status callbacks, authenticated by their signature (sms-callback.ts).
 *
 * Every answer carries nosniff, Referrer-Policy same-origin, X-Frame-Options DENY and a CSP with
 * frame-ancestors 'none' (a framed dashboard's clicks would be same-origin, which the Origin
 * check cannot tell apart). Requests whose Host header is not an allowed host get 421 (DNS
 * rebinding). Slow clients are cut off by the header and request timeouts, idle connections by
 * the idle timeout, and connections beyond HTTP_MAX_CONNECTIONS are closed when accepted.
 */

/**
 * The dashboard's page policy: bull-board's own scripts and styles (its components set inline
 * styles), its Google font, XHR to this origin only; never framed.
 */
const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
  "font-src 'self' data: https://fonts.gstatic.com",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');
/** Everything else is data (JSON, metrics text): nothing to load, never framed. */
const DATA_CSP = "default-src 'none'; frame-ancestors 'none'";
/**
 * Server-rendered pages (the safety valves, the console): inline styles, forms to this origin, no
 * script.
 */
const PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/** TRUST_PROXY as Fastify takes it: a hop count trusts that many proxies from the socket on. */
function fastifyTrustProxy(
  setting: false | number | readonly string[],
): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (setting === false) return false;
  if (typeof setting === 'number') return (_address, hop) => hop < setting;
  return [...setting];
}

export interface HttpDeps {
  readonly daemon: Daemon;
  readonly logger: Logger;
}

/** Largest JSON body accepted, bytes (an ingest batch of 1,000 items fits). */
const BODY_LIMIT = 2 * 1024 * 1024;

export async function buildHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  const { daemon } = deps;
  const { config } = daemon.ctx;
  const logger = deps.logger.child({ component: 'http' });
  const limits = config.http;
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT,
    // Node checks the header and request deadlines every connectionsCheckingInterval (30 s by
    // default, which let a slow client hold a socket for over a minute).
    http: {
      headersTimeout: limits.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(
        100,
        Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4)),
      ),
    },
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.idleTimeoutMs,
    // Per-request log lines would mostly be /metrics and /readyz polls; errors are still logged.
    logController: new Fastify.LogController({ disableRequestLogging: true }),
    // Ids in paths are at most 64 characters; a bound keeps the router cheap.
    routerOptions: { maxParamLength: 200 },
    // req.ip (the failed-login throttle's key) is the client named by a trusted proxy.
    trustProxy: fastifyTrustProxy(limits.trustProxy),
  }) as unknown as FastifyInstance;
  app.server.maxConnections = limits.maxConnections;
  const auth = createAuthenticator(config);

  app.addHook('onRequest', async (req, reply) => {
    if (!hostAllowed(req.headers.host, limits.allowedHosts)) {
      return reply.code(421).send({ error: 'misdirected', message: 'unknown Host' });
    }
    return undefined;
  });
  app.addHook('onSend', async (req, reply, payload) => {
    const dashboard = req.url.startsWith(DASHBOARD_PATH);
    void reply.headers({
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
      'x-frame-options': 'DENY',
      'content-security-policy': dashboard
        ? DASHBOARD_CSP
        : req.url.startsWith(SAFETY_PATH) || isConsolePage(req.url)
          ? PAGE_CSP
          : DATA_CSP,
    });
    return payload;
  });
  // Outside /v1 too (dashboard, SMS callback, health): a 500 answers "internal error" and logs
  // the error described, not Fastify's default of echoing its message (a failed query's SQL and
  // parameters) to the client and into the log line's text.
  app.setErrorHandler(apiErrorHandler);

  registerHealth(app, { daemon, auth, metricsPublic: config.metricsPublic });

  if (auth.hasBasic || auth.open) {
    await mountDashboard(app, { daemon, auth });
    await mountSafetyPage(app, { daemon, auth });
    await mountConsole(app, { daemon, auth });
  } else {
    logger.warn('dashboard not mounted: set DASHBOARD_USER and DASHBOARD_PASSWORD (or DEMO=true)');
  }

  // The authenticated API. The SMS callback is registered outside this scope: Twilio signs its
  // requests instead of sending credentials.
  let openApi: Record<string, unknown> = {};
  await app.register((scope, _opts, done) => {
    scope.addHook('onRequest', guard(auth, { allowBearer: true }));
    scope.setErrorHandler(apiErrorHandler);
    const api = new Api(scope);
    registerOperatorRoutes(api, daemon);
    registerIngestRoutes(api, daemon);
    registerInquiryRoutes(api, daemon);
    registerSafetyRoutes(api, daemon);
    registerBreakerRoutes(api, daemon);
    openApi = api.openApi({ title: 'overdue-worker API', version: '1' });
    scope.get('/v1/openapi.json', () => Promise.resolve(openApi));
    done();
  });

  await registerSmsCallback(app, { db: daemon.ctx.db, config, logger: deps.logger });
  return app;
}
