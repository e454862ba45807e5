import type { Decision } from './decisions';

/**
 * The mass-suspension breaker (SUSPENSION_BREAKER). A billing incident (a bad bill run that marks
 * thousands of accounts overdue at midnight) must not suspend the fleet before a person looks.
 *
 * - Every suspension decision (an account's live services, or its studios, in one episode: the
 *   decision's key) is counted once when it is first admitted. While fewer than the limit were
 *   admitted within the sliding window, it goes ahead (`allowed`).
 * - The limit is the larger of the count and the share of the accounts in good standing.
 * - The first suspension over the limit trips the breaker. From then on it is latched until an
 *   operator resets it: every new suspension, and every studio release (irreversible), is held
 *   (`held`), not written: the service stays as it is and the customer is told nothing.
 * - An operator approves held decisions (the account is evaluated again and the decision, if it
 *   is still wanted on the state at that moment, goes through the normal outbox) or rejects them
 *   with a reason (that decision is not carried out in its episode).
 *
 * Pure: the store (src/adapters/db/breaker-store.ts) reads the breaker's row and the ledger under
 * a lock, asks `admit` for the verdicts, and writes what it returns in the same transaction, so
 * two daemons never admit more than the limit between them.
 */

export interface BreakerLimits {
  /** Suspensions admitted within the window before the breaker trips (at least). */
  readonly count: number;
  readonly windowMs: number;
  /** Share of the accounts in good standing, percent (the limit is the larger of the two). */
  readonly sharePct: number;
}

/** The limit at a given count of accounts in good standing. */
export function breakerLimit(limits: BreakerLimits, goodStanding: number): number {
  return Math.max(limits.count, Math.ceil((limits.sharePct / 100) * goodStanding));
}

export type GateKind = 'suspend' | 'release';
export const LEDGER_STATUSES = ['allowed', 'held', 'approved', 'rejected'] as const;
export type LedgerStatus = (typeof LEDGER_STATUSES)[number];

/** A decision the breaker gates, by its idempotency key. */
export interface GateRequest {
  readonly key: string;
  readonly accountId: string;
  readonly kind: GateKind;
  /** What the operator sees of a held decision (amount, services, instance). */
  readonly detail: Readonly<Record<string, unknown>>;
}

export type Verdict = 'go' | 'held' | 'rejected';

export interface BreakerView {
  /** False when SUSPENSION_BREAKER is off: nothing new is counted or held. */
  readonly enabled: boolean;
  readonly tripped: boolean;
  readonly limit: number;
  /** Suspensions admitted within the window (since the last reset). */
  readonly admitted: number;
}

export interface Admission {
  readonly verdicts: ReadonlyMap<string, Verdict>;
  /** New ledger rows: suspensions admitted or held, releases held. */
  readonly rows: readonly (GateRequest & { readonly status: 'allowed' | 'held' })[];
  /** True when this admission tripped the breaker. */
  readonly trips: boolean;
}

const VERDICT_OF: Readonly<Record<LedgerStatus, Verdict>> = {
  allowed: 'go',
  approved: 'go',
  held: 'held',
  rejected: 'rejected',
};

/**
 * The verdict on each request. A key already in the ledger keeps its verdict (a decision taken
 * again by a later evaluation is neither counted nor held twice); suspensions are admitted before
 * releases, so a suspension that trips the breaker holds the releases of the same batch.
 */
export function admit(
  view: BreakerView,
  requests: readonly GateRequest[],
  known: ReadonlyMap<string, LedgerStatus>,
): Admission {
  const verdicts = new Map<string, Verdict>();
  const rows: (GateRequest & { status: 'allowed' | 'held' })[] = [];
  let tripped = view.tripped;
  let admitted = view.admitted;
  const ordered = [
    ...requests.filter((r) => r.kind === 'suspend'),
    ...requests.filter((r) => r.kind === 'release'),
  ];
  for (const r of ordered) {
    const status = known.get(r.key);
    if (status !== undefined) {
      verdicts.set(r.key, VERDICT_OF[status]);
      continue;
    }
    if (!view.enabled) {
      verdicts.set(r.key, 'go');
      continue;
    }
    if (r.kind === 'release') {
      if (tripped) rows.push({ ...r, status: 'held' });
      verdicts.set(r.key, tripped ? 'held' : 'go');
      continue;
    }
    if (!tripped && admitted < view.limit) {
      admitted += 1;
      rows.push({ ...r, status: 'allowed' });
      verdicts.set(r.key, 'go');
    } else {
      tripped = true;
      rows.push({ ...r, status: 'held' });
      verdicts.set(r.key, 'held');
    }
  }
  return { verdicts, rows, trips: tripped && !view.tripped };
}

/**
 * The decisions of one account the breaker gates: suspensions of at least one service (a
 * suspension decision that names none only changes the account's state) and studio releases.
 */
export function gateRequests(accountId: string, decisions: readonly Decision[]): GateRequest[] {
  const out: GateRequest[] = [];
  for (const d of decisions) {
    if ((d.kind === 'suspend-services' || d.kind === 'suspend-studio') && d.services.length > 0) {
      out.push({
        key: d.key,
        accountId,
        kind: 'suspend',
        detail: {
          decision: d.kind,
          episodeSeq: d.episodeSeq,
          overdueMinor: d.overdueMinor,
          serviceIds: d.services.map((s) => s.serviceId),
        },
      });
    } else if (d.kind === 'release-studio') {
      out.push({
        key: d.key,
        accountId,
        kind: 'release',
        detail: {
          decision: d.kind,
          episodeSeq: d.episodeSeq,
          instanceId: d.instanceId,
          serviceId: d.serviceId,
        },
      });
    }
  }
  return out;
}

export interface GatedDecisions {
  readonly decisions: readonly Decision[];
  /** The gated decisions not carried out, with why. */
  readonly stopped: readonly { readonly key: string; readonly verdict: 'held' | 'rejected' }[];
}

/**
 * An account's decisions without those the breaker stopped, and without what follows from them
 * in the same evaluation: the state change to suspended (the account stays overdue in protection,
 * as its services still run) and the release timers of studios whose suspension was stopped.
 * `serviceOfInstance` maps the account's studio instances to their services.
 */
export function gateDecisions(
  decisions: readonly Decision[],
  verdictOf: (key: string) => Verdict,
  serviceOfInstance: ReadonlyMap<string, string>,
): GatedDecisions {
  const stopped: { key: string; verdict: 'held' | 'rejected' }[] = [];
  const stoppedStudios = new Set<string>();
  let liveStopped = false;
  const kept: Decision[] = [];
  for (const d of decisions) {
    if (
      ((d.kind === 'suspend-services' || d.kind === 'suspend-studio') && d.services.length > 0) ||
      d.kind === 'release-studio'
    ) {
      const verdict = verdictOf(d.key);
      if (verdict !== 'go') {
        stopped.push({ key: d.key, verdict });
        if (d.kind === 'suspend-services') liveStopped = true;
        if (d.kind === 'suspend-studio')
          for (const s of d.services) stoppedStudios.add(s.serviceId);
        continue;
      }
    }
    kept.push(d);
  }
  if (stopped.length === 0) return { decisions, stopped };
  const out: Decision[] = [];
  for (const d of kept) {
    if (d.kind === 'set-state' && d.to === 'suspended' && liveStopped) {
      if (d.from !== 'protected') out.push({ ...d, key: `${d.key}-held`, to: 'protected' });
      continue;
    }
    if (
      d.kind === 'schedule-release' &&
      stoppedStudios.has(serviceOfInstance.get(d.instanceId) ?? '')
    ) {
      continue;
    }
    out.push(d);
  }
  return { decisions: out, stopped };
}
