import { createDb } from './adapters/db/client';
import { migrate } from './adapters/db/migrate';
import { parseConfigOrExit, redactedConfig } from './config';
import { childLogger, createLogger, type Logger } from './logger';

/**
 * Composition root: the only place that reads `process.env` and installs signal handlers.
 * It builds every part of the daemon, and on SIGTERM/SIGINT stops them last-opened first within
 * SHUTDOWN_TIMEOUT, then exits 0 (1 if the deadline passes or a part fails to stop).
 *
 * Today it opens and migrates the database; the queues, workers and HTTP server join
 * `resources` as they land (each registers a `close`).
 */

interface Resource {
  readonly name: string;
  readonly close: () => Promise<void>;
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

async function main(): Promise<void> {
  const config = parseConfigOrExit(process.env);
  const logger = createLogger(config.logLevel);
  logger.info({ config: redactedConfig(config) }, 'starting overdue-worker');

  // Installed before anything opens, so a signal during start-up still closes what exists.
  const resources: Resource[] = [];
  installSignalHandlers(childLogger(logger, 'shutdown'), resources, config.shutdownTimeoutMs);

  // Until the HTTP server and workers hold the event loop open, this timer keeps the daemon up.
  const keepAlive = setInterval(() => undefined, 2 ** 30);
  resources.push({ name: 'keep-alive', close: () => Promise.resolve(clearInterval(keepAlive)) });

  const dbLogger = childLogger(logger, 'db');
  try {
    const database = await createDb(config.databaseUrl, config.dataDir);
    resources.push({ name: 'database', close: () => database.close() });
    await migrate(database.db);
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

  logger.info({ host: config.host, port: config.port }, 'overdue-worker started');
}

function installSignalHandlers(logger: Logger, resources: Resource[], timeoutMs: number): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal during shutdown: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, timeoutMs }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown deadline passed: exiting with work unfinished');
      process.exit(1);
    }, timeoutMs);
    deadline.unref();
    void closeAll(logger, resources).then((clean) => {
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
  process.stderr.write(`overdue-worker failed to start: ${String(err)}\n`);
  process.exit(1);
});
