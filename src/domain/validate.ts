import { ID_TEXT, isValidId } from './ids';
import { isCurrencyCode, isMinor } from './money';
import { isValidThreshold } from './plans';
import type { PlanThreshold } from './rules';
import type { AccountSnapshot } from './snapshot';
import { isSafeKeyPart } from './keys';
import { isValidZone } from './time';

/**
 * Invariants a snapshot must hold before the policy can be applied to it. Rows are written by
 * the billing system, so anything here can be wrong; a broken account is reported and skipped
 * rather than guessed at.
 */
export interface SnapshotProblem {
  /** Short code, safe inside an idempotency key. */
  readonly code: string;
  readonly reason: string;
}

function problem(code: string, reason: string): SnapshotProblem {
  return { code, reason };
}

function thresholdsProblem(
  list: readonly PlanThreshold[] | null,
  where: string,
): SnapshotProblem | null {
  if (list === null) return null;
  for (const t of list) {
    if (!isValidThreshold(t)) {
      return problem(
        'bad-threshold',
        `${where} has an invalid alert threshold ${JSON.stringify(t)}`,
      );
    }
  }
  return null;
}

export function validateSnapshot(s: AccountSnapshot): SnapshotProblem | null {
  if (!isValidId(s.accountId)) {
    return problem('bad-id', `account id ${JSON.stringify(s.accountId)} is not ${ID_TEXT}`);
  }
  if (!isCurrencyCode(s.currency)) {
    return problem(
      'bad-currency',
      `currency ${JSON.stringify(s.currency)} is not a known ISO 4217 code`,
    );
  }
  if (!isValidZone(s.timeZone)) {
    return problem('bad-zone', `time zone ${JSON.stringify(s.timeZone)} is not a known IANA zone`);
  }
  if (!isMinor(s.availableBalanceMinor)) {
    return problem('bad-balance', 'available balance is not an integer of minor units');
  }
  if (s.lowBalanceThresholdMinor !== null && !isMinor(s.lowBalanceThresholdMinor)) {
    return problem('bad-low-balance', 'low-balance threshold is not an integer of minor units');
  }
  const q = s.protection;
  if (q !== null) {
    if (q.amountMinor !== null && !(isMinor(q.amountMinor) && q.amountMinor >= 0)) {
      return problem(
        'bad-quota',
        `protection amount ${q.amountMinor} is negative or not an integer`,
      );
    }
    if (q.durationMs !== null && !(Number.isSafeInteger(q.durationMs) && q.durationMs >= 0)) {
      return problem(
        'bad-quota',
        `protection duration ${q.durationMs} ms is negative or not an integer`,
      );
    }
  }
  if (s.episode !== null && s.episode.seq > s.lastEpisodeSeq) {
    return problem(
      'bad-episode',
      `open episode ${s.episode.seq} is after the last one opened (${s.lastEpisodeSeq})`,
    );
  }
  for (const bill of s.bills) {
    if (
      !isMinor(bill.amountMinor) ||
      !isMinor(bill.paidMinor) ||
      bill.amountMinor < 0 ||
      bill.paidMinor < 0
    ) {
      return problem('bad-bill', `bill ${bill.id} has a negative or non-integer amount`);
    }
    if (Number.isNaN(bill.dueAt.getTime())) {
      return problem('bad-bill', `bill ${bill.id} has no valid due instant`);
    }
  }
  for (const svc of s.services) {
    if (!isSafeKeyPart(svc.id))
      return problem('bad-id', `service id ${JSON.stringify(svc.id)} is unsafe`);
  }
  for (const inst of s.studioInstances) {
    if (!isSafeKeyPart(inst.id)) {
      return problem('bad-id', `studio instance id ${JSON.stringify(inst.id)} is unsafe`);
    }
  }
  for (const plan of s.plans) {
    if (!isSafeKeyPart(plan.id) || !isSafeKeyPart(plan.kind)) {
      return problem(
        'bad-id',
        `plan ${JSON.stringify(plan.id)} of kind ${JSON.stringify(plan.kind)} has an unsafe id or kind`,
      );
    }
    if (
      !Number.isSafeInteger(plan.totalUnits) ||
      !Number.isSafeInteger(plan.usedUnits) ||
      plan.totalUnits < 0 ||
      plan.usedUnits < 0
    ) {
      return problem('bad-plan', `plan ${plan.id} has negative or non-integer units`);
    }
    const bad = thresholdsProblem(plan.thresholds, `plan ${plan.id}`);
    if (bad) return bad;
  }
  return thresholdsProblem(s.planThresholds, 'account');
}
