import type { PlanThreshold } from './rules';
import type { PlanSnapshot } from './snapshot';

/**
 * Resource plan maths (R1, R10). Units are integers of the plan's resource (minutes, GB, ...).
 * No function here divides by a plan total: shares are compared by cross-multiplication.
 */

export function remainingUnits(plan: Pick<PlanSnapshot, 'totalUnits' | 'usedUnits'>): number {
  return Math.max(0, plan.totalUnits - plan.usedUnits);
}

/** A plan covers usage at `now` when it has started, not expired, and has units left. */
export function isPlanUsable(plan: PlanSnapshot, now: Date): boolean {
  const t = now.getTime();
  return plan.startsAt.getTime() <= t && t < plan.expiresAt.getTime() && remainingUnits(plan) > 0;
}

/** Earliest expiry first; ties by purchase, then id, so the order is total and stable. */
export function consumptionOrder(plans: readonly PlanSnapshot[]): PlanSnapshot[] {
  return [...plans].sort(
    (a, b) =>
      a.expiresAt.getTime() - b.expiresAt.getTime() ||
      a.purchasedAt.getTime() - b.purchasedAt.getTime() ||
      (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
}

export interface Allocation {
  /** Units drawn from each plan, in consumption order; plans drawing nothing are left out. */
  readonly fromPlans: readonly { readonly planId: string; readonly units: number }[];
  /** Units billed pay-as-you-go because no usable plan of that kind had them (R1). */
  readonly paygUnits: number;
}

/**
 * R1/R10: draws `units` of usage of `kind` from the stacked plans usable at `now`, earliest expiry
 * first; whatever they cannot cover reverts to pay-as-you-go.
 */
export function allocateUsage(
  plans: readonly PlanSnapshot[],
  kind: string,
  units: number,
  now: Date,
): Allocation {
  if (!Number.isSafeInteger(units) || units < 0) {
    throw new RangeError(`usage units must be a non-negative integer, got ${units}`);
  }
  let left = units;
  const fromPlans: { planId: string; units: number }[] = [];
  for (const plan of consumptionOrder(
    plans.filter((p) => p.kind === kind && isPlanUsable(p, now)),
  )) {
    if (left === 0) break;
    const take = Math.min(left, remainingUnits(plan));
    fromPlans.push({ planId: plan.id, units: take });
    left -= take;
  }
  return { fromPlans, paygUnits: left };
}

/**
 * The threshold's limit scaled by 100, so percent and absolute limits compare as integers-ish
 * without dividing by the total: remaining ≤ percent% of total ⇔ remaining·100 ≤ percent·total.
 */
export function thresholdLimitTimes100(threshold: PlanThreshold, totalUnits: number): number {
  return threshold.kind === 'percent' ? threshold.percent * totalUnits : threshold.units * 100;
}

/**
 * Short stable label used in idempotency keys: "p20" for 20 %, "u500" for 500 units. Stored in
 * keys, so it never changes; never shown to customers (a notice carries the threshold itself).
 */
export function thresholdLabel(threshold: PlanThreshold): string {
  const value = threshold.kind === 'percent' ? threshold.percent : threshold.units;
  return `${threshold.kind === 'percent' ? 'p' : 'u'}${String(value).replace('.', '_')}`;
}

/**
 * The most severe threshold that `remaining` has crossed, or null. A percent threshold never
 * fires for a zero total (there is no share of nothing); an absolute one still can.
 */
export function crossedThreshold(
  thresholds: readonly PlanThreshold[],
  remaining: number,
  totalUnits: number,
): PlanThreshold | null {
  let worst: PlanThreshold | null = null;
  let worstLimit = Number.POSITIVE_INFINITY;
  for (const t of thresholds) {
    if (t.kind === 'percent' && totalUnits === 0) continue;
    const limit = thresholdLimitTimes100(t, totalUnits);
    if (remaining * 100 <= limit && limit < worstLimit) {
      worst = t;
      worstLimit = limit;
    }
  }
  return worst;
}

export function isValidThreshold(t: PlanThreshold): boolean {
  return t.kind === 'percent'
    ? Number.isFinite(t.percent) && t.percent > 0 && t.percent <= 100
    : Number.isSafeInteger(t.units) && t.units >= 0;
}
