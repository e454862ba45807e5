import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Metrics. Two kinds:
 *
 * - Counters and histograms of things that happen inside jobs live in `jobRegistry` (one per
 *   process) and are bumped by the jobs through the helpers of `metrics` below.
 * - Values that already live in PostgreSQL or Redis (queue depths, notifications by status,
 *   release lag, payment → resume latency) are computed when /metrics is scraped
 *   (`ScrapeMetrics`, used by health.ts), so they are right after a restart and agree across
 *   several daemons.
 *
 * Names are prefixed `overdue_`; durations are seconds (Prometheus convention).
 */

export const jobRegistry = new Registry();

/** A histogram of `jobRegistry`, by the given labels. */
function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
  buckets: number[],
) {
  return new Histogram<L>({ name, help, labelNames, buckets, registers: [jobRegistry] });
}

/** A counter of `jobRegistry`, by the given labels. */
function counter<L extends string>(name: string, help: string, labelNames: readonly L[]) {
  return new Counter<L>({ name, help, labelNames, registers: [jobRegistry] });
}

const scanDuration = histogram(
  'overdue_scan_duration_seconds',
  'Duration of one scan job, seconds',
  ['scan'] as const,
  [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
);
const scanCandidates = histogram(
  'overdue_scan_candidates',
  'Accounts one scan fanned out to evaluations',
  ['scan'] as const,
  [0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000],
);
const decisions = counter(
  'overdue_decisions_total',
  'Decisions taken by account evaluations, by kind',
  ['kind'] as const,
);
const evaluations = counter(
  'overdue_evaluations_total',
  'Account evaluations, by outcome (evaluated, invalid, not-found)',
  ['status'] as const,
);
const effects = counter(
  'overdue_effects_total',
  'Control-plane effects by operation and outcome (applied, superseded, failed, retry)',
  ['op', 'outcome'] as const,
);

const jobsFinished = counter(
  'overdue_jobs_finished_total',
  "Jobs this process finished, by queue and state (completed, or failed for good). Effect, timer and notification jobs leave Redis when they complete, so the queues' completed counts do not count them",
  ['queue', 'state'] as const,
);

const httpRefused = counter(
  'overdue_http_refused_total',
  'Refused HTTP requests by route and status: SMS callbacks (bad signature 403, wrong media type 415, too large 413, bad form 400) and failed logins (401, throttled 429)',
  ['route', 'status'] as const,
);

const redisConnected = new Gauge({
  name: 'overdue_redis_connected',
  help: 'Whether the workers reach Redis (1) or lost it (0), as last reported by their connections',
  registers: [jobRegistry],
});
redisConnected.set(1);

/** What the jobs call. Each helper is cheap and never throws. */
export const metrics = {
  /** After a balance or plan scan: its duration (ms) and how many accounts it enqueued. */
  scanFinished(scan: 'balance' | 'plan', durationMs: number, candidates: number): void {
    scanDuration.observe({ scan }, durationMs / 1000);
    scanCandidates.observe({ scan }, candidates);
  },
  /** After an evaluation: its status and the kinds of the decisions it took. */
  evaluated(status: string, decisionKinds: readonly string[] = []): void {
    evaluations.inc({ status });
    for (const kind of decisionKinds) decisions.inc({ kind });
  },
  /** A worker finished a job: completed, or failed for good (no retry left). */
  jobFinished(queue: string, state: 'completed' | 'failed'): void {
    jobsFinished.inc({ queue, state });
  },
  /** An HTTP request was refused (`route`: sms-callback, auth). */
  httpRefused(route: string, status: number): void {
    httpRefused.inc({ route, status: String(status) });
  },
  /** The workers' Redis connection state changed. */
  redisConnected(up: boolean): void {
    redisConnected.set(up ? 1 : 0);
  },
  /** After a control-plane effect job ran. */
  effect(op: string, outcome: string): void {
    effects.inc({ op, outcome });
  },
};

// ---------------------------------------------------------------------------------------------
// Scrape-time values, set by health.ts from the database and Redis right before each scrape.

export class ScrapeMetrics {
  readonly registry = new Registry();
  readonly up = this.gauge('overdue_dependency_up', 'Dependency answered (1) or not (0)', [
    'dependency',
  ]);
  readonly queueJobs = this.gauge('overdue_queue_jobs', 'Jobs in a queue by state', [
    'queue',
    'state',
  ]);
  readonly schedulers = this.gauge(
    'overdue_job_schedulers_present',
    'Job schedulers present in Redis (1) or missing (0)',
    ['scheduler'],
  );
  readonly notifications = this.gauge(
    'overdue_notifications_24h',
    'Notifications created in the last 24 hours, by channel and current status',
    ['channel', 'status'],
  );
  readonly outboxPending = this.gauge(
    'overdue_outbox_pending',
    'Outbox rows not yet relayed to a queue',
    [],
  );
  readonly outboxOldestPending = this.gauge(
    'overdue_outbox_oldest_pending_seconds',
    'Age of the oldest pending outbox row that is due, seconds (0 when none)',
    [],
  );
  readonly releasesLate = this.gauge(
    'overdue_studio_releases_late',
    'Studio releases past their due instant and not yet done',
    [],
  );
  readonly releaseLateMax = this.gauge(
    'overdue_studio_release_late_seconds',
    'How far past due the latest pending studio release is, seconds (0 when none)',
    [],
  );
  readonly releaseLag = this.gauge(
    'overdue_studio_release_lag_seconds',
    'Release instant minus due instant of studio releases done in the last 24 hours, seconds',
    ['quantile'],
  );
  readonly resumeLatency = this.gauge(
    'overdue_payment_to_resume_seconds',
    'Services resumed in the last 24 hours: resume instant minus the last bill payment before it, seconds',
    ['quantile'],
  );
  readonly safety = this.gauge(
    'overdue_safety_state',
    'Safety valves: enforcement mode (1 on the current mode), pauses (1 while paused), the mass-suspension breaker tripped (1) or not',
    ['valve', 'value'],
  );
  readonly breakerHeld = this.gauge(
    'overdue_breaker_held',
    'Suspensions and studio releases held by the mass-suspension breaker, awaiting an operator',
    [],
  );
  readonly scrapeErrors = this.gauge(
    'overdue_scrape_errors',
    'Parts of this scrape that could not be computed (their series are missing)',
    ['part'],
  );

  private gauge<L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  resetAll(): void {
    this.registry.resetMetrics();
  }

  /** Prometheus text of the job metrics and these values. */
  async text(): Promise<string> {
    const [jobs, scraped] = await Promise.all([jobRegistry.metrics(), this.registry.metrics()]);
    return `${jobs.trimEnd()}\n${scraped}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
