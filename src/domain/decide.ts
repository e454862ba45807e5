import type { Decision, Notice, NoticeTemplate, OverdueCause, ServiceAction } from './decisions';
import { keys } from './keys';
import { unpaidMinor, type Minor } from './money';
import { crossedThreshold, isPlanUsable, remainingUnits, thresholdLabel } from './plans';
import type { ProtectionQuota, RuleSettings } from './rules';
import type {
  AccountSnapshot,
  BillSnapshot,
  EnforcementState,
  EpisodeSnapshot,
  PlanSnapshot,
  ServiceSnapshot,
} from './snapshot';
import { addMs, periodEnd, periodLabel } from './time';
import { validateSnapshot } from './validate';

/**
 * The policy, R1–R10, as one pure function: what should happen to this account at `now`.
 *
 * Idempotent by construction: every decision carries a key derived from the snapshot and the
 * window it belongs to, so evaluating the same account twice (or from two daemons) produces the
 * same keys and the outbox keeps one of each. Total: a snapshot that breaks an invariant yields a
 * single `invalid-snapshot` decision, never an exception.
 */
export function decide(snapshot: AccountSnapshot, now: Date, rules: RuleSettings): Decision[] {
  const problem = validateSnapshot(snapshot);
  if (problem !== null) {
    return [
      {
        kind: 'invalid-snapshot',
        key: keys.invalid(snapshot.accountId, problem.code),
        reason: problem.reason,
      },
    ];
  }
  return new Evaluation(snapshot, now, rules).run();
}

/** A bill is overdue once its due instant has passed with something still unpaid (R2). */
export function isOverdue(bill: BillSnapshot, now: Date): boolean {
  return unpaidMinor(bill.amountMinor, bill.paidMinor) > 0 && bill.dueAt.getTime() < now.getTime();
}

/** R2: the overdue amount is the unpaid remainder of every overdue bill, of every product. */
export function overdueMinor(bills: readonly BillSnapshot[], now: Date): Minor {
  let total = 0;
  for (const bill of bills) {
    if (isOverdue(bill, now)) total += unpaidMinor(bill.amountMinor, bill.paidMinor);
  }
  return total;
}

/**
 * R4: which limit, if any, has ended protection. Amount and duration are inclusive bounds:
 * exactly at the quota amount, or exactly at the quota duration, is still protected.
 */
export function protectionBreach(
  quota: ProtectionQuota,
  overdue: Minor,
  elapsedMs: number,
): OverdueCause['limit'] | null {
  if (quota.amountMinor === null && quota.durationMs === null) return 'no-protection';
  if (quota.amountMinor !== null && overdue > quota.amountMinor) return 'amount';
  if (quota.durationMs !== null && elapsedMs > quota.durationMs) return 'duration';
  return null;
}

/** R5 applies to live video; a duration-plan studio follows R9 instead. */
function isLiveService(service: ServiceSnapshot): boolean {
  if (service.kind === 'studio') return service.planType === 'payg';
  return (
    service.kind === 'streaming' || service.kind === 'recording' || service.kind === 'screenshots'
  );
}

function isDurationStudio(service: ServiceSnapshot): boolean {
  return service.kind === 'studio' && service.planType === 'duration';
}

/**
 * One control-plane action per service, keyed for this episode. A service an operator holds is
 * already stopped: its hold changes, but the control plane is not called.
 */
function serviceActions(
  services: readonly ServiceSnapshot[],
  keyOf: (serviceId: string) => string,
): ServiceAction[] {
  return services.map((svc) => ({
    serviceId: svc.id,
    key: keyOf(svc.id),
    callControlPlane: !svc.operatorHold,
  }));
}

function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

class Evaluation {
  private readonly out: Decision[] = [];
  /**
   * Instants when time alone changes a decision and minutes matter: protection ending by
   * duration, a release warning, a release. Slower transitions (a bill falling due, a plan
   * reminder) are found by the periodic scans, so they cost no timer per account.
   */
  private readonly wakeCandidates: number[] = [];
  private readonly nowMs: number;
  private state: EnforcementState;

  constructor(
    private readonly s: AccountSnapshot,
    private readonly now: Date,
    private readonly rules: RuleSettings,
  ) {
    this.nowMs = now.getTime();
    this.state = s.enforcementState;
  }

  run(): Decision[] {
    const overdue = overdueMinor(this.s.bills, this.now);

    let episodeSeq: number;
    if (overdue > 0) {
      const episode = this.s.episode ?? this.openEpisode();
      episodeSeq = episode.seq;
      this.decideOverdue(episode, overdue);
    } else {
      episodeSeq = this.s.episode?.seq ?? this.s.lastEpisodeSeq;
      this.decideSettled(episodeSeq);
    }
    this.decidePlans();

    if (this.state !== this.s.enforcementState) {
      this.out.push({
        kind: 'set-state',
        key: keys.state(this.s.accountId, this.state, episodeSeq),
        from: this.s.enforcementState,
        to: this.state,
      });
    }
    const future = this.wakeCandidates.filter((t) => t > this.nowMs);
    if (future.length > 0) {
      const at = Math.min(...future);
      this.out.push({ kind: 'wake', key: keys.wake(this.s.accountId, at), at: new Date(at) });
    }
    return this.out;
  }

  private wakeAt(ms: number): void {
    this.wakeCandidates.push(ms);
  }

  private notice(template: NoticeTemplate, params: Notice['params']): Notice {
    return {
      template,
      channels: this.s.channels,
      params: { currency: this.s.currency, ...params },
    };
  }

  /**
   * R2: the episode starts when the amount went from zero to positive. The earliest due instant of
   * a still-unpaid overdue bill is a point since which the amount has been positive without a
   * break; it is never placed before the end of the previous episode.
   */
  private openEpisode(): EpisodeSnapshot {
    const seq = this.s.lastEpisodeSeq + 1;
    let startMs = Number.POSITIVE_INFINITY;
    for (const bill of this.s.bills) {
      if (isOverdue(bill, this.now)) startMs = Math.min(startMs, bill.dueAt.getTime());
    }
    if (this.s.lastEpisodeEndedAt !== null) {
      startMs = Math.max(startMs, this.s.lastEpisodeEndedAt.getTime());
    }
    const startedAt = new Date(Math.min(startMs, this.nowMs));
    this.out.push({
      kind: 'open-episode',
      key: keys.openEpisode(this.s.accountId, seq),
      episodeSeq: seq,
      startedAt,
    });
    return { seq, startedAt };
  }

  private decideOverdue(episode: EpisodeSnapshot, overdue: Minor): void {
    const { s, rules } = this;
    const seq = episode.seq;
    this.decideStudios(seq, overdue);

    const quota = s.protection ?? rules.defaultProtection;
    const elapsedMs = this.nowMs - episode.startedAt.getTime();
    const breach = protectionBreach(quota, overdue, elapsedMs);

    if (breach === null && this.state !== 'suspended') {
      // R4: protected. Billing goes on; remind during protection.
      this.state = 'protected';
      if (quota.durationMs !== null)
        this.wakeAt(episode.startedAt.getTime() + quota.durationMs + 1);
      const period = periodLabel(rules.overdueReminder, this.now, s.timeZone);
      this.out.push({
        kind: 'overdue-reminder',
        key: keys.overdueReminder(s.accountId, seq, period),
        episodeSeq: seq,
        overdueMinor: overdue,
        notice: this.notice('overdue-reminder', {
          overdueMinor: overdue,
          ...(quota.amountMinor !== null ? { protectionAmountMinor: quota.amountMinor } : {}),
          ...(quota.durationMs !== null
            ? { protectionEndsAt: addMs(episode.startedAt, quota.durationMs).toISOString() }
            : {}),
        }),
      });
      return;
    }

    // R5/R6: protection has ended (now, or earlier in this episode). Suspend every live service
    // not yet held by overdue, including ones created since the suspension.
    const wasSuspended = this.state === 'suspended';
    this.state = 'suspended';
    const targets = s.services.filter(
      (svc) => isLiveService(svc) && svc.status !== 'released' && !svc.overdueHold,
    );
    if (targets.length === 0 && wasSuspended) return;
    const cause = this.cause(breach ?? 'still-suspended');
    this.out.push({
      kind: 'suspend-services',
      key: keys.suspendNotice(s.accountId, seq),
      episodeSeq: seq,
      overdueMinor: overdue,
      cause,
      services: serviceActions(targets, (id) => keys.suspendService(id, seq)),
      notice: this.notice('suspended', {
        overdueMinor: overdue,
        limit: cause.limit,
        products: cause.products,
        otherProducts: cause.otherProducts,
        causedByOtherProduct: cause.otherProducts.length > 0,
      }),
    });
  }

  /** R6: the products whose overdue bills count, and which of them are not live video. */
  private cause(limit: OverdueCause['limit']): OverdueCause {
    const products = sortedUnique(
      this.s.bills.filter((b) => isOverdue(b, this.now)).map((b) => b.product),
    );
    const live = new Set(this.rules.liveProducts);
    return { products, otherProducts: products.filter((p) => !live.has(p)), limit };
  }

  /**
   * R9: a duration-plan studio is suspended as soon as the account is overdue, with no
   * protection. Each of its instances is released `studioReleaseDelayMs` (elapsed time, not wall
   * clock) after its suspension, with a warning `studioReleaseWarningMs` before.
   */
  private decideStudios(seq: number, overdue: Minor): void {
    const { s, rules } = this;
    const studios = s.services.filter((svc) => isDurationStudio(svc) && svc.status !== 'released');
    const toSuspend = studios.filter((svc) => !svc.overdueHold);
    const held = new Set(studios.map((svc) => svc.id));
    const releaseAt = addMs(this.now, rules.studioReleaseDelayMs);

    if (toSuspend.length > 0) {
      const suspendedIds = new Set(toSuspend.map((svc) => svc.id));
      const streaming = s.studioInstances
        .filter((i) => suspendedIds.has(i.serviceId) && i.releasedAt === null && i.streaming)
        .map((i) => i.name);
      this.out.push({
        kind: 'suspend-studio',
        key: keys.studioSuspendNotice(s.accountId, seq),
        episodeSeq: seq,
        overdueMinor: overdue,
        services: serviceActions(toSuspend, (id) => keys.studioSuspendService(id, seq)),
        notice: this.notice('studio-suspended', {
          overdueMinor: overdue,
          releaseAt: releaseAt.toISOString(),
          streamingStudios: sortedUnique(streaming),
          anyStreaming: streaming.length > 0,
        }),
      });
    }

    for (const inst of s.studioInstances) {
      if (inst.releasedAt !== null || !held.has(inst.serviceId)) continue;
      if (inst.releaseDueAt === null) {
        this.out.push({
          kind: 'schedule-release',
          key: keys.releaseTimer(inst.id, seq),
          episodeSeq: seq,
          instanceId: inst.id,
          dueAt: releaseAt,
        });
        this.wakeAt(releaseAt.getTime() - rules.studioReleaseWarningMs);
        this.wakeAt(releaseAt.getTime());
        continue;
      }
      const dueMs = inst.releaseDueAt.getTime();
      const warnMs = dueMs - rules.studioReleaseWarningMs;
      if (this.nowMs >= dueMs) {
        this.out.push({
          kind: 'release-studio',
          key: keys.release(inst.id, seq),
          episodeSeq: seq,
          instanceId: inst.id,
          serviceId: inst.serviceId,
          notice: this.notice('studio-released', {
            studio: inst.name,
            overdueMinor: overdue,
          }),
        });
        continue;
      }
      if (this.nowMs >= warnMs) {
        this.out.push({
          kind: 'release-warning',
          key: keys.releaseWarning(inst.id, seq),
          episodeSeq: seq,
          instanceId: inst.id,
          releaseAt: inst.releaseDueAt,
          notice: this.notice('studio-release-warning', {
            studio: inst.name,
            releaseAt: inst.releaseDueAt.toISOString(),
            overdueMinor: overdue,
          }),
        });
      } else {
        this.wakeAt(warnMs);
      }
      this.wakeAt(dueMs);
    }
  }

  /** Overdue amount is zero: end the episode, lift overdue's holds (R7), cancel releases (R9). */
  private decideSettled(seq: number): void {
    const { s } = this;
    if (s.episode !== null) {
      this.out.push({
        kind: 'close-episode',
        key: keys.closeEpisode(s.accountId, s.episode.seq),
        episodeSeq: s.episode.seq,
        endedAt: this.now,
      });
    }
    for (const inst of s.studioInstances) {
      if (inst.releasedAt === null && inst.releaseDueAt !== null) {
        this.out.push({
          kind: 'cancel-release',
          key: keys.releaseCancel(inst.id, seq),
          episodeSeq: seq,
          instanceId: inst.id,
          releaseKey: keys.releaseTimer(inst.id, seq),
        });
      }
    }
    // A released service stays released (R9: final), but the hold that led to its release ends
    // with the episode: a hold left on it would contradict the account's state for every reader.
    const releasedHeld = s.services.filter((svc) => svc.overdueHold && svc.status === 'released');
    if (releasedHeld.length > 0) {
      this.out.push({
        kind: 'clear-released-holds',
        key: keys.clearReleasedHolds(s.accountId, seq),
        episodeSeq: seq,
        serviceIds: releasedHeld.map((svc) => svc.id),
      });
    }
    // Holds are lifted from the services themselves, not from the episode record, so holds that
    // outlived their episode (an interrupted resume) are lifted too. Operator holds stay.
    const held = s.services.filter((svc) => svc.overdueHold && svc.status !== 'released');
    const actions = serviceActions(held, (id) => keys.resumeService(id, seq));
    if (actions.length > 0 || this.state === 'suspended') {
      this.out.push({
        kind: 'resume-services',
        key: keys.resumeNotice(s.accountId, seq),
        episodeSeq: seq,
        services: actions,
        notice: this.notice('resumed', {
          resumed: actions.filter((a) => a.callControlPlane).length,
          stillHeldByOperator: actions.filter((a) => !a.callControlPlane).length,
        }),
      });
    }
    this.state = 'active';

    // R3: low balance. Not while overdue: the overdue reminder already asks for a top-up.
    const threshold = s.lowBalanceThresholdMinor ?? this.rules.lowBalanceThresholdMinor;
    if (s.availableBalanceMinor < threshold) {
      const period = periodLabel(this.rules.lowBalanceReminder, this.now, s.timeZone);
      this.out.push({
        kind: 'low-balance-reminder',
        key: keys.lowBalance(s.accountId, period),
        until: periodEnd(this.rules.lowBalanceReminder, this.now, s.timeZone),
        notice: this.notice('low-balance', {
          balanceMinor: s.availableBalanceMinor,
          thresholdMinor: threshold,
        }),
      });
    }
  }

  /** R1 and R10, per plan kind: quota alerts, expiry reminders, revert to pay-as-you-go. */
  private decidePlans(): void {
    const byKind = new Map<string, PlanSnapshot[]>();
    for (const plan of this.s.plans) {
      const list = byKind.get(plan.kind) ?? [];
      list.push(plan);
      byKind.set(plan.kind, list);
    }
    for (const [kind, plans] of [...byKind.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      this.decidePlanKind(kind, plans);
    }
  }

  private decidePlanKind(kind: string, plans: readonly PlanSnapshot[]): void {
    const { s, now, nowMs, rules } = this;
    const started = plans.filter((p) => p.startsAt.getTime() <= nowMs);
    if (started.length === 0) return;
    const usable = started.filter((p) => isPlanUsable(p, now));
    const latestOf = (list: readonly PlanSnapshot[]): PlanSnapshot =>
      list.reduce((a, b) =>
        b.purchasedAt.getTime() > a.purchasedAt.getTime() ||
        (b.purchasedAt.getTime() === a.purchasedAt.getTime() && b.id > a.id)
          ? b
          : a,
      );

    if (usable.length === 0) {
      // R1: every plan of this kind is expired or depleted; usage is pay-as-you-go again. Told
      // once per plan: the key names the latest plan bought, so a new purchase re-arms it.
      const latest = latestOf(started);
      const expiredLongAgo =
        latest.expiresAt.getTime() <= nowMs &&
        nowMs - latest.expiresAt.getTime() > rules.revertNoticeWindowMs;
      if (expiredLongAgo) return;
      this.out.push({
        kind: 'payg-revert-notice',
        key: keys.paygRevert(s.accountId, kind, latest.id),
        planKind: kind,
        planId: latest.id,
        notice: this.notice('plan-reverted', {
          planKind: kind,
          planId: latest.id,
          reason: latest.expiresAt.getTime() <= nowMs ? 'expired' : 'depleted',
        }),
      });
      return;
    }

    // R10: the plan set is the usable plans of this kind; it changes identity when a plan is bought.
    const latest = latestOf(usable);
    let total = 0;
    let remaining = 0;
    for (const plan of usable) {
      total += plan.totalUnits;
      remaining += remainingUnits(plan);
    }
    const thresholds = latest.thresholds ?? s.planThresholds ?? rules.planThresholds;
    const crossed = crossedThreshold(thresholds, remaining, total);
    if (crossed !== null) {
      this.out.push({
        kind: 'plan-quota-alert',
        key: keys.planQuota(s.accountId, kind, latest.id, thresholdLabel(crossed)),
        planKind: kind,
        threshold: crossed,
        remainingUnits: remaining,
        totalUnits: total,
        // The key keeps its stored label ("p20", "u500"); the customer reads the threshold itself.
        notice: this.notice('plan-quota-low', {
          planKind: kind,
          remainingUnits: remaining,
          totalUnits: total,
          ...(crossed.kind === 'percent'
            ? { thresholdPercent: crossed.percent }
            : { thresholdUnits: crossed.units }),
        }),
      });
    }

    // R10: expiry reminders, the nearest offset already reached (one message, not one per offset).
    const offsets = [...rules.planExpiryReminderMs].sort((a, b) => a - b);
    for (const plan of usable) {
      const expiresMs = plan.expiresAt.getTime();
      const reached = offsets.find((offset) => nowMs >= expiresMs - offset);
      if (reached === undefined) continue;
      this.out.push({
        kind: 'plan-expiry-reminder',
        key: keys.planExpiry(plan.id, reached),
        planId: plan.id,
        expiresAt: plan.expiresAt,
        notice: this.notice('plan-expiring', {
          planKind: kind,
          planId: plan.id,
          expiresAt: plan.expiresAt.toISOString(),
          remainingUnits: remainingUnits(plan),
        }),
      });
    }
  }
}
