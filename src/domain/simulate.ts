import { decide } from './decide';
import type { Decision, ServiceAction } from './decisions';
import type { RuleSettings } from './rules';
import type { AccountSnapshot, ServiceSnapshot } from './snapshot';

/**
 * Replays the policy for one account over a span of time with a fake clock: what reminders,
 * suspensions, resumes and releases the daemon would produce, and when. Pure: the snapshot is
 * advanced by applying each decision's state change in memory, as the daemon's transaction would.
 */

export interface TimelineEntry {
  readonly at: Date;
  readonly decision: Decision;
}

/** Something that happens to the account during the replay, e.g. a payment. */
export interface ScriptedEvent {
  readonly at: Date;
  readonly label: string;
  readonly apply: (s: AccountSnapshot) => AccountSnapshot;
}

export interface SimulationOptions {
  readonly from: Date;
  readonly to: Date;
  /** Evaluate at least this often (ms), as the scans would; timers add exact instants. */
  readonly stepMs: number;
  readonly events?: readonly ScriptedEvent[];
  /** Upper bound on evaluations, so a tiny step over a long span cannot run away. */
  readonly maxSteps?: number;
}

export interface SimulationResult {
  readonly timeline: readonly TimelineEntry[];
  readonly final: AccountSnapshot;
  readonly steps: number;
  readonly truncated: boolean;
}

/** Pays every bill in full: the usual scripted event. */
export function payEverything(s: AccountSnapshot): AccountSnapshot {
  return { ...s, bills: s.bills.map((b) => ({ ...b, paidMinor: b.amountMinor })) };
}

export function simulate(
  start: AccountSnapshot,
  rules: RuleSettings,
  options: SimulationOptions,
): SimulationResult {
  const maxSteps = options.maxSteps ?? 100_000;
  const events = [...(options.events ?? [])].sort((a, b) => a.at.getTime() - b.at.getTime());
  const seen = new Set<string>();
  const timeline: TimelineEntry[] = [];
  let s = start;
  let t = options.from.getTime();
  const end = options.to.getTime();
  let steps = 0;
  let nextEvent = 0;
  while (t <= end && steps < maxSteps) {
    while (nextEvent < events.length && (events[nextEvent]?.at.getTime() ?? Infinity) <= t) {
      s = events[nextEvent]?.apply(s) ?? s;
      nextEvent += 1;
    }
    const now = new Date(t);
    const decisions = decide(s, now, rules);
    steps += 1;
    let wake = Infinity;
    for (const d of decisions) {
      if (d.kind === 'wake') {
        wake = Math.min(wake, d.at.getTime());
        continue;
      }
      // The outbox keeps one row per key: a decision repeated by a later evaluation is no news.
      if (seen.has(d.key)) continue;
      seen.add(d.key);
      timeline.push({ at: now, decision: d });
      s = applyToSnapshot(s, d, now);
    }
    const nextEventAt = events[nextEvent]?.at.getTime() ?? Infinity;
    t = Math.min(t + options.stepMs, wake, nextEventAt);
  }
  return { timeline, final: s, steps, truncated: t <= end };
}

/** The snapshot with `update` applied to each unreleased service an action names. */
function withServices(
  s: AccountSnapshot,
  actions: readonly ServiceAction[],
  update: (svc: ServiceSnapshot) => ServiceSnapshot,
): AccountSnapshot {
  const ids = new Set(actions.map((a) => a.serviceId));
  return {
    ...s,
    services: s.services.map((svc) =>
      ids.has(svc.id) && svc.status !== 'released' ? update(svc) : svc,
    ),
  };
}

/** The state change a decision makes, applied to an in-memory snapshot. */
export function applyToSnapshot(s: AccountSnapshot, d: Decision, now: Date): AccountSnapshot {
  switch (d.kind) {
    case 'open-episode':
      return {
        ...s,
        episode: { seq: d.episodeSeq, startedAt: d.startedAt },
        lastEpisodeSeq: d.episodeSeq,
      };
    case 'close-episode':
      return { ...s, episode: null, lastEpisodeEndedAt: d.endedAt };
    case 'set-state':
      return { ...s, enforcementState: d.to };
    case 'suspend-services':
    case 'suspend-studio':
      return withServices(s, d.services, (svc) => ({
        ...svc,
        overdueHold: true,
        status: 'suspended',
      }));
    case 'resume-services':
      return withServices(s, d.services, (svc) => ({
        ...svc,
        overdueHold: false,
        status: svc.operatorHold ? 'suspended' : 'active',
      }));
    case 'clear-released-holds': {
      const ids = new Set(d.serviceIds);
      return {
        ...s,
        services: s.services.map((svc) =>
          ids.has(svc.id) && svc.status === 'released' ? { ...svc, overdueHold: false } : svc,
        ),
      };
    }
    case 'schedule-release':
      return {
        ...s,
        studioInstances: s.studioInstances.map((i) =>
          i.id === d.instanceId ? { ...i, releaseDueAt: d.dueAt } : i,
        ),
      };
    case 'cancel-release':
      return {
        ...s,
        studioInstances: s.studioInstances.map((i) =>
          i.id === d.instanceId && i.releasedAt === null ? { ...i, releaseDueAt: null } : i,
        ),
      };
    case 'release-studio': {
      const instances = s.studioInstances.map((i) =>
        i.id === d.instanceId ? { ...i, releasedAt: now } : i,
      );
      const allGone = instances
        .filter((i) => i.serviceId === d.serviceId)
        .every((i) => i.releasedAt !== null);
      return {
        ...s,
        studioInstances: instances,
        services: allGone
          ? s.services.map((svc) => (svc.id === d.serviceId ? { ...svc, status: 'released' } : svc))
          : s.services,
      };
    }
    default:
      return s;
  }
}

/** One line per entry, for people: instant, decision kind and what it is about. */
export function describeDecision(d: Decision): string {
  switch (d.kind) {
    case 'suspend-services':
      return `suspend ${d.services.map((a) => a.serviceId).join(', ') || '(no live service)'} — overdue ${d.overdueMinor}, limit ${d.cause.limit}${d.cause.otherProducts.length ? `, caused by ${d.cause.otherProducts.join(', ')}` : ''}`;
    case 'suspend-studio':
      return `suspend studio ${d.services.map((a) => a.serviceId).join(', ')} at once`;
    case 'resume-services':
      return `resume ${d.services.map((a) => a.serviceId).join(', ') || '(nothing held)'}`;
    case 'clear-released-holds':
      return `overdue hold cleared from released ${d.serviceIds.join(', ')}`;
    case 'schedule-release':
      return `release of ${d.instanceId} scheduled for ${d.dueAt.toISOString()}`;
    case 'cancel-release':
      return `release of ${d.instanceId} cancelled`;
    case 'release-studio':
      return `release studio instance ${d.instanceId}`;
    case 'release-warning':
      return `warn: ${d.instanceId} is released at ${d.releaseAt.toISOString()}`;
    case 'open-episode':
      return `overdue episode ${d.episodeSeq} opens (started ${d.startedAt.toISOString()})`;
    case 'close-episode':
      return `overdue episode ${d.episodeSeq} ends`;
    case 'set-state':
      return `state ${d.from} → ${d.to}`;
    case 'overdue-reminder':
      return `overdue reminder (${d.overdueMinor}) to ${d.notice.channels.join('+') || 'nobody'}`;
    case 'low-balance-reminder':
      return `low-balance reminder to ${d.notice.channels.join('+') || 'nobody'}`;
    case 'plan-quota-alert':
      return `plan ${d.planKind}: ${d.remainingUnits}/${d.totalUnits} left`;
    case 'plan-expiry-reminder':
      return `plan ${d.planId} expires ${d.expiresAt.toISOString()}`;
    case 'payg-revert-notice':
      return `plan ${d.planKind} reverts to pay-as-you-go`;
    case 'wake':
      return `wake at ${d.at.toISOString()}`;
    case 'invalid-snapshot':
      return `skipped: ${d.reason}`;
  }
}
