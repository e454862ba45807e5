import type { Minor } from './money';
import type { PlanThreshold, ProtectionQuota } from './rules';

/**
 * Everything `decide` needs to know about one account, loaded in one transaction. Plain data:
 * instants are `Date` (UTC), money is integer minor units in `currency`.
 */

export type ServiceKind = 'streaming' | 'recording' | 'screenshots' | 'studio' | 'other';
/** How a service is billed: pay-as-you-go, or a production-studio duration plan (R9). */
export type PlanType = 'payg' | 'duration';
export type ServiceStatus = 'active' | 'suspended' | 'released';
export type EnforcementState = 'active' | 'protected' | 'suspended';
export type Channel = 'email' | 'sms';

/** Kinds suspended by R5 when protection ends. */
export const LIVE_SERVICE_KINDS: readonly ServiceKind[] = ['streaming', 'recording', 'screenshots'];

export interface BillSnapshot {
  readonly id: string;
  /** Product code, e.g. "live", "oss". */
  readonly product: string;
  readonly amountMinor: Minor;
  readonly paidMinor: Minor;
  readonly dueAt: Date;
}

export interface ServiceSnapshot {
  readonly id: string;
  readonly kind: ServiceKind;
  readonly planType: PlanType;
  readonly status: ServiceStatus;
  /** Suspended by overdue enforcement (R5/R9); lifted by R7. */
  readonly overdueHold: boolean;
  /** Suspended by an operator; never lifted by R7. */
  readonly operatorHold: boolean;
}

export interface StudioInstanceSnapshot {
  readonly id: string;
  readonly serviceId: string;
  readonly name: string;
  /** True while the instance is pushing a live stream (it keeps billing while suspended). */
  readonly streaming: boolean;
  /** Release instant fixed at its overdue suspension; null when none is pending. */
  readonly releaseDueAt: Date | null;
  readonly releasedAt: Date | null;
}

export interface PlanSnapshot {
  readonly id: string;
  /** Resource kind the plan covers, e.g. "transcoding-minutes". */
  readonly kind: string;
  readonly totalUnits: number;
  readonly usedUnits: number;
  readonly startsAt: Date;
  readonly expiresAt: Date;
  readonly purchasedAt: Date;
  /** Per-plan alert thresholds; null uses the account's, then the defaults. */
  readonly thresholds: readonly PlanThreshold[] | null;
}

export interface EpisodeSnapshot {
  /** Per-account sequence number, 1 for the first episode. */
  readonly seq: number;
  readonly startedAt: Date;
}

export interface AccountSnapshot {
  readonly accountId: string;
  readonly currency: string;
  /** IANA zone name, e.g. "Asia/Shanghai". */
  readonly timeZone: string;
  /** BCP 47 tag, e.g. "en" or "zh-CN". */
  readonly locale: string;
  readonly availableBalanceMinor: Minor;
  /** Null uses the rule default. */
  readonly lowBalanceThresholdMinor: Minor | null;
  /** Null uses the rule default. */
  readonly protection: ProtectionQuota | null;
  /** Channels the customer accepts and can be reached on (preference and contact present). */
  readonly channels: readonly Channel[];
  readonly enforcementState: EnforcementState;
  /** The open overdue episode, if any. */
  readonly episode: EpisodeSnapshot | null;
  /** Sequence number of the last episode ever opened (0 if none). */
  readonly lastEpisodeSeq: number;
  /** When the last closed episode ended; a new one never starts before it. */
  readonly lastEpisodeEndedAt: Date | null;
  /** Account-level plan alert thresholds; null uses the defaults. */
  readonly planThresholds: readonly PlanThreshold[] | null;
  /** Bills with an unpaid remainder (any due date). */
  readonly bills: readonly BillSnapshot[];
  readonly services: readonly ServiceSnapshot[];
  readonly studioInstances: readonly StudioInstanceSnapshot[];
  /** Plans not expired, or expired within the revert-notice window. */
  readonly plans: readonly PlanSnapshot[];
}
