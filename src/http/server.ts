import Fastify, { type FastifyInstance } from 'fastify';
import type { Daemon } from '../daemon';
import type { Logger } from '../logger';
import { Api, apiErrorHandler } from './api';
import { createAuthenticator, guard } from './auth';
import { mountDashboard } from './dashboard';
import { registerHealth } from './health';
import { registerIngestRoutes } from './routes-ingest';
import { registerInquiryRoutes } from './routes-inquiry';
import { registerOperatorRoutes } from './routes-operator';
import { registerSmsCallback } from './sms-callback';

/**
 * The daemon's HTTP server (not listening: main.ts calls `.listen({ host, port })`).
 *
 * - /healthz, /readyz: no auth. /metrics: auth unless METRICS_PUBLIC=true.
 * - /admin/queues: the bull-board dashboard, HTTP Basic (operator, or the read-only viewer);
 *   mounted only when a Basic account exists, or in demo mode.
 * - /v1/...: the JSON API (Basic or Bearer), OpenAPI document at /v1/openapi.json.
 * - /v1/callbacks/sms: Twilio status callbacks, authenticated by their signature (sms-callback.ts).
 */

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
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT,
    // Per-request log lines would mostly be /metrics and /readyz polls; errors are still logged.
    logController: new Fastify.LogController({ disableRequestLogging: true }),
    // Ids in paths are at most 64 characters; a bound keeps the router cheap.
    routerOptions: { maxParamLength: 200 },
  }) as unknown as FastifyInstance;
  const auth = createAuthenticator(config);
  // Outside /v1 too (dashboard, SMS callback, health): a 500 answers "internal error" and logs
  // the error described, not Fastify's default of echoing its message (a failed query's SQL and
  // parameters) to the client and into the log line's text.
  app.setErrorHandler(apiErrorHandler);

  registerHealth(app, { daemon, auth, metricsPublic: config.metricsPublic });

  if (auth.hasBasic || auth.open) {
    await mountDashboard(app, { daemon, auth });
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
    openApi = api.openApi({ title: 'overdue-worker API', version: '1' });
    scope.get('/v1/openapi.json', () => Promise.resolve(openApi));
    done();
  });

  await registerSmsCallback(app, { db: daemon.ctx.db, config, logger: deps.logger });
  return app;
}
