import type { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobContext } from '../jobs/context';
import { startNotifyWorkers, startWorkers } from '../jobs/registry';
import { createSendNotificationHandler } from '../jobs/send-notification';
import { notifyJobOptions } from './adapters/queue/notify-wiring';
import { isValidId } from './domain/ids';
import { createNotifyPorts, type NotifyPorts } from './adapters/notify/index';
import { OperatorAlerts, OperatorMonitor } from './adapters/notify/operator-alerts';
import { systemClock, type Clock } from './adapters/clock/clock';
import {
  databaseControlPlane,
  httpControlPlane,
  type ControlPlane,
} from './adapters/control-plane/control-plane';
import { createDb, dbOptions, type DbHandle, type Unlisten } from './adapters/db/client';
import { alertBreakerTrip, applyConfiguredBreaker } from './adapters/db/breaker-store';
import { applyConfiguredMode } from './adapters/db/control-store';
import { migrateDatabase } from './adapters/db/migrate';
import { QUEUES } from './adapters/queue/catalog';
import { createRedis } from './adapters/queue/connection';
import { RedisLink } from './adapters/queue/redis-link';
import { OutboxRelay } from './adapters/queue/outbox-relay';
import { evaluationOptions, QueueSet } from './adapters/queue/queues';
import type { Config } from './config';
import type { Logger } from './logger';

/** NOTIFY channel of migration 0002: payload is an account id. */
export const ACCOUNT_CHANNEL = 'overdue_worker_account';
/** How often the watchdog checks that the schedulers still exist in Redis, ms. */
const WATCHDOG_MS = 5_000;
/** How often the operator monitor looks at failed jobs and scheduler lateness, ms. */
const MONITOR_MS = 60_000;
/** How long a caller waits for Redis to take prompt evaluations before going on without, ms. */
const EVALUATE_WAIT_MS = 2_000;
/** Accounts kept for evaluation while Redis is away; past this a scan catches up instead. */
const MAX_UNQUEUED = 100_000;

export const SCHEDULER_IDS = {
  balance: 'balance-scan',
  plans: 'plan-scan',
  prune: 'prune',
} as const;
/** How often the prune job runs, ms (retention ages are RETENTION_*). */
const PRUNE_INTERVAL_MS = 3_600_000;

export interface DaemonOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly controlPlane?: ControlPlane;
  /** An open database to use (tests); otherwise one is opened from the config and closed at stop. */
  readonly database?: DbHandle;
  /** Mail and SMS adapters; default: from the config (SMTP / Twilio / the outbox folder). */
  readonly notifyPorts?: NotifyPorts;
  /** false: notifications are queued but not sent by this process (tests that inspect rows). */
  readonly sendNotifications?: boolean;
  /** Start without workers (a producer-only process, or tests that drive jobs by hand). */
  readonly workers?: boolean;
}

export interface Daemon {
  readonly ctx: JobContext;
  /** Operator alerting (failed jobs, providers, schedulers); `check()` also runs every minute. */
  readonly monitor: OperatorMonitor;
  readonly database: DbHandle;
  /** Enqueues a prompt evaluation of one account (deduplicated per account). */
  evaluateSoon(accountId: string, origin: string): Promise<void>;
  /**
   * Enqueues prompt evaluations of these accounts, waiting at most `waitMs`. Never throws: when
   * Redis does not take them in time they are kept and enqueued once it answers again (the scan
   * catches up too), and the result is false.
   */
  evaluateAccounts(
    accountIds: readonly string[],
    origin: string,
    waitMs?: number,
  ): Promise<boolean>;
  /** Upserts the job schedulers (idempotent; several daemons end with one schedule each). */
  ensureSchedulers(): Promise<void>;
  close(): Promise<void>;
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  if (!options.database) await migrateDatabase(config.databaseUrl, config.dataDir);
  const database =
    options.database ?? (await createDb(config.databaseUrl, config.dataDir, dbOptions(config)));
  const mode = await applyConfiguredMode(database.db, config.enforcementMode);
  await applyConfiguredBreaker(database.db, config.suspensionBreaker);
  if (mode.state.mode !== config.enforcementMode) {
    logger.warn(
      {
        mode: mode.state.mode,
        configured: config.enforcementMode,
        by: mode.state.changedBy,
        reason: mode.state.reason,
      },
      "enforcement mode set by an operator differs from ENFORCEMENT_MODE: the operator's stands",
    );
  } else if (mode.state.mode !== 'enforce') {
    logger.warn({ mode: mode.state.mode }, `enforcement mode is ${mode.state.mode}`);
  }

  const redisLink = new RedisLink(logger.child({ component: 'redis' }));
  const producerRedis = createRedis(config.redisUrl, 'producer', logger, redisLink);
  const workerRedis = createRedis(config.redisUrl, 'worker', logger, redisLink);
  const queues = new QueueSet(producerRedis, config.queuePrefix);
  const relay = new OutboxRelay(database.db, queues, clock, logger.child({ component: 'relay' }), {
    notifyOptions: notifyJobOptions(),
  });
  const ports = options.notifyPorts ?? createNotifyPorts(config, logger);
  const operatorAlerts = new OperatorAlerts(
    ports,
    producerRedis,
    { ...config.notify.operators, from: config.mail.from, prefix: config.queuePrefix },
    clock,
    logger.child({ component: 'operator-alerts' }),
  );
  const monitor = new OperatorMonitor(operatorAlerts, queues, Object.values(SCHEDULER_IDS), clock, {
    failedJobs: 10,
    providerFailures: 5,
  });
  const controlPlane =
    options.controlPlane ??
    (config.controlPlane
      ? httpControlPlane({
          url: config.controlPlane.url,
          secret: config.controlPlane.secret,
          timeoutMs: config.controlPlaneTimeoutMs,
          connections: config.effectsConcurrency,
        })
      : databaseControlPlane());
  const ctx: JobContext = {
    db: database.db,
    config,
    logger,
    clock,
    queues,
    relay,
    controlPlane,
    breakerHeld: () => {
      alertBreakerTrip(database.db, operatorAlerts).catch((err: unknown) =>
        logger.error({ err }, 'breaker alert failed'),
      );
    },
  };

  const evaluateSoon = async (accountId: string, origin: string) => {
    await queues.add(
      'evaluate-account',
      { accountId, origin },
      evaluationOptions(accountId, 'event'),
    );
  };

  // Accounts whose evaluation could not be queued (Redis away): queued again once it answers.
  // Bounded: past the cap a full scan on reconnect catches every account up instead.
  const unqueued = new Set<string>();
  let unqueuedOverflow = false;
  const remember = (accountIds: readonly string[]) => {
    for (const id of accountIds) {
      if (unqueued.size >= MAX_UNQUEUED) {
        unqueuedOverflow = true;
        break;
      }
      unqueued.add(id);
    }
  };
  const evaluateAccounts = async (
    accountIds: readonly string[],
    origin: string,
    waitMs = EVALUATE_WAIT_MS,
  ): Promise<boolean> => {
    if (accountIds.length === 0) return true;
    const jobs = [...new Set(accountIds)].map((accountId) => ({
      data: { accountId, origin },
      opts: evaluationOptions(accountId, 'event'),
    }));
    let timer: NodeJS.Timeout | undefined;
    const queued = queues.addBulk('evaluate-account', jobs).then(
      () => true,
      (err: unknown) => {
        logger.warn({ err, accounts: jobs.length }, 'cannot queue evaluations; kept for later');
        return false;
      },
    );
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), waitMs);
    });
    const ok = await Promise.race([queued, timedOut]);
    clearTimeout(timer);
    if (!ok) remember(accountIds);
    return ok;
  };
  let flushing = false;
  const flushUnqueued = async () => {
    if (flushing || (unqueued.size === 0 && !unqueuedOverflow)) return;
    flushing = true;
    try {
      const ids = [...unqueued];
      const overflow = unqueuedOverflow;
      unqueued.clear();
      unqueuedOverflow = false;
      if (overflow) await queues.add('balance-scan', { origin: 'unqueued-overflow' });
      if (ids.length > 0 && !(await evaluateAccounts(ids, 'retry'))) return;
      logger.info(
        { accounts: ids.length, overflow },
        'queued evaluations kept while Redis was away',
      );
    } catch (err) {
      unqueuedOverflow = true;
      logger.warn({ err }, 'cannot queue the evaluations kept while Redis was away');
    } finally {
      flushing = false;
    }
  };
  producerRedis.on('ready', () => void flushUnqueued());

  const ensureSchedulers = async () => {
    const scan = queues.byName.scan;
    await scan.upsertJobScheduler(
      SCHEDULER_IDS.balance,
      { every: config.scanIntervalMs },
      {
        name: 'balance-scan',
        data: { origin: 'scheduler' },
        opts: QueueSet.optionsFor('balance-scan'),
      },
    );
    await scan.upsertJobScheduler(
      SCHEDULER_IDS.plans,
      { every: config.planScanIntervalMs },
      { name: 'plan-scan', data: { origin: 'scheduler' }, opts: QueueSet.optionsFor('plan-scan') },
    );
    await scan.upsertJobScheduler(
      SCHEDULER_IDS.prune,
      { every: PRUNE_INTERVAL_MS },
      { name: 'prune', data: { origin: 'scheduler' }, opts: QueueSet.optionsFor('prune') },
    );
  };

  let workers: Worker[] = [];
  const timers: NodeJS.Timeout[] = [];
  let unlisten: Unlisten | null = null;
  try {
    await ensureSchedulers();
    if (options.workers !== false) {
      workers = startWorkers(ctx, workerRedis, {
        concurrency: {
          [QUEUES.scan]: 1,
          [QUEUES.evaluate]: config.evaluateConcurrency,
          [QUEUES.effects]: config.effectsConcurrency,
        },
        onError: (err, queue) => redisLink.error(err, queue),
      });
      if (options.sendNotifications !== false) {
        const send = createSendNotificationHandler({
          db: database.db,
          config,
          logger,
          clock,
          ports,
          requestRelay: () => relay.request(),
          onOutcome: (channel, outcome) => monitor.recordOutcome(channel, outcome),
        });
        workers.push(
          ...startNotifyWorkers(ctx, workerRedis, send, (err, queue) =>
            redisLink.error(err, queue),
          ),
        );
      }
    }

    // React in seconds: the billing system's writes NOTIFY the account id.
    unlisten = await database.listen(
      ACCOUNT_CHANNEL,
      (payload) => {
        if (!isValidId(payload)) {
          logger.warn(
            { payload: payload.slice(0, 80) },
            'ignored NOTIFY with a malformed account id',
          );
          return;
        }
        void evaluateAccounts([payload], 'db-event');
      },
      () => {
        // Notifications sent while the listening connection was down are lost: scan now.
        logger.warn('database listener reconnected; scanning to catch up');
        queues.add('balance-scan', { origin: 'listener-reconnect' }).catch(() => undefined);
      },
    );

    // Safety net for the relay, and a watchdog that re-creates schedules Redis lost.
    timers.push(setInterval(() => relay.request(), config.outboxPollIntervalMs));
    timers.push(setInterval(() => void flushUnqueued(), WATCHDOG_MS));
    timers.push(
      setInterval(() => {
        void (async () => {
          const present = await queues.byName.scan.getJobScheduler(SCHEDULER_IDS.balance);
          if (present) return;
          logger.warn(
            'job schedulers missing from Redis (data loss?); re-creating and restoring jobs',
          );
          await ensureSchedulers();
          await relay.reconcile();
        })().catch((err: unknown) => logger.error({ err }, 'watchdog check failed'));
      }, WATCHDOG_MS),
    );

    timers.push(
      setInterval(() => {
        monitor.check().catch((err: unknown) => logger.error({ err }, 'operator monitor failed'));
        // A trip whose alert a crashed daemon did not send is sent here.
        ctx.breakerHeld?.();
      }, MONITOR_MS),
    );

    // Start-up: dispatch what is pending, restore what Redis may have lost while we were down,
    // and scan for what changed meanwhile (NOTIFYs sent while no daemon listened are lost).
    await relay.drain();
    await relay.reconcile();
    await queues.add('balance-scan', { origin: 'startup' });
  } catch (error) {
    for (const t of timers) clearInterval(t);
    await Promise.allSettled(workers.map((w) => w.close()));
    await unlisten?.().catch(() => undefined);
    await queues.close().catch(() => undefined);
    producerRedis.disconnect();
    workerRedis.disconnect();
    if (!options.notifyPorts) await ports.close().catch(() => undefined);
    if (!options.controlPlane) await controlPlane.close?.().catch(() => undefined);
    if (!options.database) await database.close().catch(() => undefined);
    throw error;
  }

  return {
    ctx,
    monitor,
    database,
    evaluateSoon,
    evaluateAccounts,
    ensureSchedulers,
    close: async () => {
      for (const t of timers) clearInterval(t);
      await unlisten?.().catch(() => undefined);
      // Stop taking jobs; in-flight ones finish (the caller bounds this with its deadline).
      const startedAt = Date.now();
      await Promise.all(workers.map((w) => w.close()));
      await relay.idle();
      logger.info({ ms: Date.now() - startedAt }, 'workers stopped; in-flight jobs finished');
      await queues.close();
      await quit(producerRedis);
      await quit(workerRedis);
      if (!options.notifyPorts) await ports.close();
      if (!options.controlPlane) await controlPlane.close?.().catch(() => undefined);
      if (!options.database) await database.close();
    },
  };
}

async function quit(redis: Redis): Promise<void> {
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}
