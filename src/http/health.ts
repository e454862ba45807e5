import { sql } from 'drizzle-orm';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CURRENT_MODE } from '../adapters/db/control-store';
import { PAUSE_KINDS } from '../adapters/db/schema';
import { ENFORCEMENT_MODES } from '../domain/modes';
import { queryRows } from '../adapters/db/client';
import { SCHEDULER_IDS, type Daemon } from '../daemon';
import { describeError } from '../describe-error';
import { LogThrottle } from '../logger';
import type { Authenticator } from './auth';
import { guard } from './auth';
import { ScrapeMetrics } from '../observability/metrics';

/**
 * /healthz: the process is up (no dependency is checked: a liveness probe must not restart the
 * daemon because Redis blinked). /readyz: PostgreSQL answers `select 1`, Redis answers PING and
 * both job schedulers exist; 503 naming each failed part. The answer is public, so it says only
 * `failed` or `timed out` per part; the error itself is logged (at most once a minute per part).
 * /metrics: Prometheus text; needs credentials unless METRICS_PUBLIC=true.
 */

/** Each dependency probe gets this long, ms: a probe must not hang the scrape. */
const PROBE_TIMEOUT_MS = 1_500;

export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new ProbeTimeout(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Internal: the error's description (no query parameters), for the log only. */
const message = (error: unknown): string => describeError(error);

export interface Check {
  readonly ok: boolean;
  /** What failed, described; for the log, never for the public answer. */
  readonly error?: string;
  readonly timedOut?: boolean;
  readonly ms: number;
}

class ProbeTimeout extends Error {}

async function check(fn: () => Promise<unknown>, what: string): Promise<Check> {
  const started = performance.now();
  try {
    await withTimeout(fn(), PROBE_TIMEOUT_MS, what);
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (error) {
    return {
      ok: false,
      error: message(error),
      timedOut: error instanceof ProbeTimeout,
      ms: Math.round(performance.now() - started),
    };
  }
}

export async function readiness(daemon: Daemon): Promise<Record<string, Check>> {
  const { db, queues } = daemon.ctx;
  const scan = queues.byName.scan;
  const [postgres, redis, schedulers] = await Promise.all([
    check(() => db.execute(sql`select 1`), 'postgres'),
    check(async () => {
      // The queues run on ioredis connections (createRedis), which answer PING.
      const client = (await scan.getBackend().client) as unknown as { ping(): Promise<string> };
      const pong = await client.ping();
      if (pong !== 'PONG') throw new Error(`unexpected PING answer ${pong}`);
    }, 'redis'),
    check(async () => {
      const missing: string[] = [];
      for (const id of Object.values(SCHEDULER_IDS)) {
        if (!(await scan.getJobScheduler(id))) missing.push(id);
      }
      if (missing.length > 0) throw new Error(`missing job schedulers: ${missing.join(', ')}`);
    }, 'schedulers'),
  ]);
  return { postgres, redis, schedulers };
}

const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'failed',
  'completed',
] as const;

/** Sets every scrape-time gauge; a part that fails is counted in overdue_scrape_errors. */
async function collect(daemon: Daemon, m: ScrapeMetrics): Promise<void> {
  const { db, queues } = daemon.ctx;
  m.resetAll();
  const ready = await readiness(daemon);
  m.up.set({ dependency: 'postgres' }, ready.postgres?.ok ? 1 : 0);
  m.up.set({ dependency: 'redis' }, ready.redis?.ok ? 1 : 0);

  const parts: Record<string, () => Promise<void>> = {
    queues: async () => {
      if (!ready.redis?.ok) throw new Error('redis down');
      await Promise.all(
        Object.values(queues.byName).map(async (queue) => {
          const counts = await queue.getJobCounts(...JOB_STATES);
          for (const state of JOB_STATES) {
            m.queueJobs.set({ queue: queue.name, state }, counts[state] ?? 0);
          }
        }),
      );
    },
    schedulers: async () => {
      if (!ready.redis?.ok) throw new Error('redis down');
      const scan = queues.byName.scan;
      for (const id of Object.values(SCHEDULER_IDS)) {
        m.schedulers.set({ scheduler: id }, (await scan.getJobScheduler(id)) ? 1 : 0);
      }
    },
    notifications: async () => {
      const rows = await queryRows<{ channel: string; status: string; n: string | number }>(
        db,
        sql`select channel, status, count(*) as n from notifications
             where created_at > now() - interval '24 hours' group by channel, status`,
      );
      for (const r of rows) m.notifications.set({ channel: r.channel, status: r.status }, +r.n);
    },
    outbox: async () => {
      const [row] = await queryRows<{ n: string | number; oldest: string | number | null }>(
        db,
        sql`select count(*) as n,
                   extract(epoch from now() - min(available_at) filter (where available_at <= now())) as oldest
              from outbox where status = 'pending'`,
      );
      m.outboxPending.set(Number(row?.n ?? 0));
      m.outboxOldestPending.set(Math.max(0, Number(row?.oldest ?? 0)));
    },
    safety: async () => {
      const [row] = await queryRows<{
        mode: string;
        pauses: string[] | null;
        tripped: boolean;
        held: string | number;
      }>(
        db,
        sql`select ${CURRENT_MODE} as mode,
                   (select array_agg(kind) from control_pauses) as pauses,
                   (select tripped_at is not null from breaker_state where id = 1) as tripped,
                   (select count(*) from breaker_ledger where status = 'held') as held`,
      );
      if (row === undefined) return;
      for (const mode of ENFORCEMENT_MODES) {
        m.safety.set({ valve: 'mode', value: mode }, row.mode === mode ? 1 : 0);
      }
      for (const kind of PAUSE_KINDS) {
        m.safety.set({ valve: 'pause', value: kind }, row.pauses?.includes(kind) ? 1 : 0);
      }
      m.safety.set({ valve: 'breaker', value: 'tripped' }, row.tripped ? 1 : 0);
      m.breakerHeld.set(Number(row.held));
    },
    releases: async () => {
      const [late] = await queryRows<{ n: string | number; worst: string | number | null }>(
        db,
        sql`select count(*) as n, extract(epoch from now() - min(release_due_at)) as worst
              from studio_instances
             where released_at is null and release_due_at is not null and release_due_at < now()`,
      );
      m.releasesLate.set(Number(late?.n ?? 0));
      m.releaseLateMax.set(Math.max(0, Number(late?.worst ?? 0)));
      const [lag] = await queryRows<QuantileRow>(
        db,
        sql`select ${QUANTILES} from (
              select extract(epoch from released_at - release_due_at) as v from studio_instances
               where released_at > now() - interval '24 hours' and release_due_at is not null) x`,
      );
      setQuantiles(m.releaseLag, lag);
    },
    resume: async () => {
      const [row] = await queryRows<QuantileRow>(
        db,
        sql`select ${QUANTILES} from (
              select extract(epoch from s.resumed_at - (
                       select max(b.updated_at) from bills b
                        where b.account_id = s.account_id and b.updated_at <= s.resumed_at)) as v
                from services s
               where s.resumed_at > now() - interval '24 hours') x
             where v is not null`,
      );
      setQuantiles(m.resumeLatency, row);
    },
  };
  await Promise.all(
    Object.entries(parts).map(async ([part, fn]) => {
      try {
        await withTimeout(fn(), PROBE_TIMEOUT_MS, part);
        m.scrapeErrors.set({ part }, 0);
      } catch {
        m.scrapeErrors.set({ part }, 1);
      }
    }),
  );
}

interface QuantileRow {
  readonly p50: string | number | null;
  readonly p99: string | number | null;
  readonly max: string | number | null;
}

const QUANTILES = sql.raw(
  `percentile_cont(0.5) within group (order by v) as p50,
   percentile_cont(0.99) within group (order by v) as p99, max(v) as max`,
);

function setQuantiles(gauge: ScrapeMetrics['releaseLag'], row: QuantileRow | undefined): void {
  if (row?.max === null || row?.max === undefined) return; // nothing in the window: no series
  gauge.set({ quantile: '0.5' }, Number(row.p50));
  gauge.set({ quantile: '0.99' }, Number(row.p99));
  gauge.set({ quantile: '1' }, Number(row.max));
}

export function registerHealth(
  app: FastifyInstance,
  deps: { daemon: Daemon; auth: Authenticator; metricsPublic: boolean },
): void {
  const { daemon } = deps;
  const scrape = new ScrapeMetrics();
  // Scrapes are serialized: the gauges are shared state.
  let last: Promise<unknown> = Promise.resolve();

  app.get('/healthz', () => Promise.resolve({ status: 'ok' }));

  const notReadyLog = new LogThrottle(60_000);
  app.get('/readyz', async (req, reply) => {
    const checks = await readiness(daemon);
    const failed = Object.entries(checks)
      .filter(([, c]) => !c.ok)
      .map(([name]) => name);
    const shown: Record<string, { ok: boolean; ms: number; error?: string }> = {};
    for (const [name, c] of Object.entries(checks)) {
      shown[name] = c.ok
        ? { ok: true, ms: c.ms }
        : { ok: false, ms: c.ms, error: c.timedOut ? 'timed out' : 'failed' };
      if (!c.ok && notReadyLog.take(name) !== null) {
        req.log.warn({ check: name, error: c.error }, 'readiness check failed');
      }
    }
    return reply
      .code(failed.length === 0 ? 200 : 503)
      .send({ status: failed.length === 0 ? 'ready' : 'not-ready', failed, checks: shown });
  });

  const metricsGuard = guard(deps.auth, { allowBearer: true });
  app.get(
    '/metrics',
    {
      onRequest: async (req: FastifyRequest, reply: FastifyReply) =>
        deps.metricsPublic ? undefined : metricsGuard(req, reply),
    },
    async (_req, reply) => {
      const run = last.then(async () => {
        await collect(daemon, scrape);
        return scrape.text();
      });
      last = run.catch(() => undefined);
      const text = await run;
      return reply.header('content-type', scrape.contentType).send(text);
    },
  );
}
