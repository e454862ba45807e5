import { createDb, dbOptions, type DbHandle } from './adapters/db/client';
import { migrateDatabase } from './adapters/db/migrate';
import { assertRedisAnswers } from './adapters/queue/connection';
import { parseConfigOrExit, redactedConfig } from './config';
import { startDaemon } from './daemon';
import { describeError } from './describe-error';
import { buildHttpServer } from './http/server';
import { childLogger, createLogger, type Logger } from './logger';

/**
 * Composition root: the only place that reads `process.env` and installs signal handlers.
 * It builds every part of the daemon, and on SIGTERM/SIGINT stops them last-opened first within
 * SHUTDOWN_TIMEOUT, then exits 0 (1 if the deadline passes or a part fails to stop).
 *
 * It opens and migrates the database, checks that Redis answers (with a message that says how to
 * get one), then starts the daemon: workers, schedulers, the outbox relay and the database
 * listener. Each part registers a `close`.
 */

interface Resource {
  readonly name: string;
  readonly close: () => Promise<void>;
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/**
 * Signals within this long of the first count as the same request, ms: Ctrl-C under `npm start`
 * delivers the terminal's SIGINT and the one npm forwards a few ms apart. A signal after it
 * forces the exit.
 */
const SIGNAL_DEBOUNCE_MS = 1_500;

async function main(): Promise<void> {
  const config = parseConfigOrExit(process.env);
  const logger = createLogger(config.logLevel);
  logger.info({ config: redactedConfig(config) }, 'starting overdue-worker');

  // Installed before anything opens. A signal during start-up is acted on once start-up has
  // finished (bounded by SHUTDOWN_TIMEOUT): closing the database while the daemon is still
  // starting would leave its workers running jobs against a closed pool, and exiting then would
  // cut sends in flight.
  const resources: Resource[] = [];
  let started = (): void => undefined;
  const startup = new Promise<void>((resolve) => (started = resolve));
  installSignalHandlers(
    childLogger(logger, 'shutdown'),
    resources,
    config.shutdownTimeoutMs,
    startup,
  );

  const dbLogger = childLogger(logger, 'db');
  let database: DbHandle;
  try {
    await migrateDatabase(config.databaseUrl, config.dataDir, (m) => dbLogger.info(m));
    database = await createDb(config.databaseUrl, config.dataDir, dbOptions(config));
    resources.push({ name: 'database', close: () => database.close() });
    dbLogger.info({ driver: database.driver }, 'database ready, migrations applied');
  } catch (err) {
    // The message names the host or folder, never the password (postgres.js does not echo it).
    dbLogger.fatal(
      { err, database: config.databaseUrl === null ? 'pglite' : 'postgres' },
      'cannot open or migrate the database',
    );
    await closeAll(dbLogger, resources);
    process.exit(1);
  }

  try {
    await assertRedisAnswers(config.redisUrl, 3_000);
  } catch (err) {
    logger.fatal((err as Error).message);
    process.stderr.write(`overdue-worker: ${(err as Error).message}\n`);
    await closeAll(logger, resources);
    process.exit(1);
  }

  const daemon = await startDaemon({ config, logger, database });
  resources.push({ name: 'daemon', close: () => daemon.close() });
  const http = await buildHttpServer({ daemon, logger });
  await http.listen({ host: config.host, port: config.port });
  resources.push({ name: 'http', close: () => http.close() });
  logger.info({ host: config.host, port: config.port }, 'overdue-worker started');
  started();
}

function installSignalHandlers(
  logger: Logger,
  resources: Resource[],
  timeoutMs: number,
  startup: Promise<void>,
): void {
  let stoppingSince: number | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stoppingSince !== null) {
      if (Date.now() - stoppingSince < SIGNAL_DEBOUNCE_MS) {
        logger.debug({ signal }, 'signal repeated while shutting down: already draining');
        return;
      }
      logger.warn(
        { signal },
        'second signal during shutdown: exiting now without draining (jobs in flight are retried by another daemon or at the next start)',
      );
      process.exit(1);
    }
    stoppingSince = Date.now();
    logger.info(
      { signal, timeoutMs },
      `shutting down (draining jobs; signal again after ${SIGNAL_DEBOUNCE_MS / 1000} s to exit at once)`,
    );
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown deadline passed: exiting with work unfinished');
      process.exit(1);
    }, timeoutMs);
    deadline.unref();
    void startup
      .then(() => closeAll(logger, resources))
      .then((clean) => {
        clearTimeout(deadline);
        logger.info({ clean }, 'overdue-worker stopped');
        process.exit(clean ? 0 : 1);
      });
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

/** Closes resources last-opened first; true when every one closed without error. */
async function closeAll(logger: Logger, resources: readonly Resource[]): Promise<boolean> {
  let clean = true;
  for (const resource of [...resources].reverse()) {
    try {
      await resource.close();
      logger.debug({ resource: resource.name }, 'closed');
    } catch (err) {
      clean = false;
      logger.error({ err, resource: resource.name }, 'failed to close');
    }
  }
  return clean;
}

main().catch((err: unknown) => {
  // Reached only for a bug in start-up itself; configuration problems exit in parseConfigOrExit.
  process.stderr.write(`overdue-worker failed to start: ${describeError(err)}\n`);
  process.exit(1);
});
