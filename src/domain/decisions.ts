import type { Minor } from './money';
import type { PlanThreshold } from './rules';
import type { Channel, EnforcementState } from './snapshot';

/**
 * What `decide` asks for. Every decision carries a deterministic idempotency `key` (see keys.ts):
 * applying the same decision twice must be a no-op, which the outbox's unique key enforces.
 */

/** Why an account was suspended (R6): which products' unpaid bills count, and if another did. */
export interface OverdueCause {
  readonly products: readonly string[];
  /** Products other than live video among the overdue bills (R6: the notice names them). */
  readonly otherProducts: readonly string[];
  /** Which protection limit ended protection; 'still-suspended' when it had ended earlier. */
  readonly limit: 'amount' | 'duration' | 'no-protection' | 'still-suspended';
}

export type NoticeTemplate =
  | 'low-balance'
  | 'overdue-reminder'
  | 'suspended'
  | 'resumed'
  | 'studio-suspended'
  | 'studio-release-warning'
  | 'studio-released'
  | 'plan-quota-low'
  | 'plan-expiring'
  | 'plan-reverted';

/** A message to the customer; `params` holds what the template shows (ids, amounts, instants). */
export interface Notice {
  readonly template: NoticeTemplate;
  readonly channels: readonly Channel[];
  readonly params: Readonly<Record<string, string | number | boolean | readonly string[]>>;
}

/** One service touched by a suspend/resume decision. */
export interface ServiceAction {
  readonly serviceId: string;
  readonly key: string;
  /**
   * False when only the hold flag changes and the control plane is not called: suspending a
   * service an operator already holds, or lifting overdue's hold while an operator's remains.
   */
  readonly callControlPlane: boolean;
}

export type Decision =
  | {
      readonly kind: 'open-episode';
      readonly key: string;
      readonly episodeSeq: number;
      readonly startedAt: Date;
    }
  | {
      readonly kind: 'close-episode';
      readonly key: string;
      readonly episodeSeq: number;
      readonly endedAt: Date;
    }
  | {
      readonly kind: 'set-state';
      readonly key: string;
      readonly from: EnforcementState;
      readonly to: EnforcementState;
    }
  | {
      readonly kind: 'low-balance-reminder';
      readonly key: string;
      /** End of this reminder window: the next reminder cannot come before it. */
      readonly until: Date;
      readonly notice: Notice;
    }
  | {
      readonly kind: 'overdue-reminder';
      readonly key: string;
      readonly episodeSeq: number;
      readonly overdueMinor: Minor;
      readonly notice: Notice;
    }
  | {
      readonly kind: 'suspend-services';
      readonly key: string;
      readonly episodeSeq: number;
      readonly overdueMinor: Minor;
      readonly cause: OverdueCause;
      readonly services: readonly ServiceAction[];
      readonly notice: Notice;
    }
  | {
      readonly kind: 'resume-services';
      readonly key: string;
      /** Episode that ended (or the last one, when holds outlived their episode). */
      readonly episodeSeq: number;
      readonly services: readonly ServiceAction[];
      readonly notice: Notice;
    }
  | {
      /**
       * The episode is over: released services (R9, final) drop the overdue hold that led to
       * their release. Their status stays `released`; nothing is called at the control plane.
       */
      readonly kind: 'clear-released-holds';
      readonly key: string;
      readonly episodeSeq: number;
      readonly serviceIds: readonly string[];
    }
  | {
      readonly kind: 'suspend-studio';
      readonly key: string;
      readonly episodeSeq: number;
      readonly overdueMinor: Minor;
      readonly services: readonly ServiceAction[];
      readonly notice: Notice;
    }
  | {
      readonly kind: 'schedule-release';
      readonly key: string;
      readonly episodeSeq: number;
      readonly instanceId: string;
      readonly dueAt: Date;
    }
  | {
      readonly kind: 'cancel-release';
      readonly key: string;
      readonly episodeSeq: number;
      readonly instanceId: string;
      /** Key of the release this cancels (its delayed job id). */
      readonly releaseKey: string;
    }
  | {
      readonly kind: 'release-warning';
      readonly key: string;
      readonly episodeSeq: number;
      readonly instanceId: string;
      readonly releaseAt: Date;
      readonly notice: Notice;
    }
  | {
      readonly kind: 'release-studio';
      readonly key: string;
      readonly episodeSeq: number;
      readonly instanceId: string;
      readonly serviceId: string;
      readonly notice: Notice;
    }
  | {
      readonly kind: 'plan-quota-alert';
      readonly key: string;
      readonly planKind: string;
      readonly threshold: PlanThreshold;
      readonly remainingUnits: number;
      readonly totalUnits: number;
      readonly notice: Notice;
    }
  | {
      readonly kind: 'plan-expiry-reminder';
      readonly key: string;
      readonly planId: string;
      readonly expiresAt: Date;
      readonly notice: Notice;
    }
  | {
      readonly kind: 'payg-revert-notice';
      readonly key: string;
      readonly planKind: string;
      readonly planId: string;
      readonly notice: Notice;
    }
  /** Evaluate the account again at `at`: the next protection end, release warning or release. */
  | { readonly kind: 'wake'; readonly key: string; readonly at: Date }
  /** The snapshot breaks an invariant; nothing else is decided for this account. */
  | { readonly kind: 'invalid-snapshot'; readonly key: string; readonly reason: string };

export type DecisionKind = Decision['kind'];
