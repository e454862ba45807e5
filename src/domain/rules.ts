import type { Minor } from './money';

/**
 * Every tunable of the policy. Values come from configuration (src/config/); the domain never
 * reads them from anywhere else. Durations are milliseconds, amounts minor units.
 */

/** How often a repeated reminder may go out while its condition holds. */
export type ReminderPeriod =
  /** Once per calendar day in the account's time zone. */
  | { readonly kind: 'local-day' }
  /** Once per fixed window of this many milliseconds (windows aligned to the Unix epoch). */
  | { readonly kind: 'every'; readonly ms: number };

/**
 * Suspension protection quota (R4). A null limit is not applied. Both null means no protection:
 * the first overdue cent ends it.
 */
export interface ProtectionQuota {
  /** Protected while the overdue amount is at most this many minor units. */
  readonly amountMinor: Minor | null;
  /** Protected while at most this many ms have passed since the overdue episode started. */
  readonly durationMs: number | null;
}

/** A plan quota alert threshold (R10): a share of the total, or an absolute remaining amount. */
export type PlanThreshold =
  /** Alert when remaining ≤ `percent` % of the total. */
  | { readonly kind: 'percent'; readonly percent: number }
  /** Alert when remaining ≤ `units`. */
  | { readonly kind: 'units'; readonly units: number };

/** Local wall-clock window during which SMS is held back, e.g. 22:00–08:00. */
export interface QuietHours {
  /** Minutes after local midnight when quiet starts (inclusive). */
  readonly startMinute: number;
  /** Minutes after local midnight when quiet ends (exclusive). Equal to start: no quiet hours. */
  readonly endMinute: number;
}

export interface RuleSettings {
  /** R3: how often a low-balance reminder may repeat. */
  readonly lowBalanceReminder: ReminderPeriod;
  /** R3: default threshold when the account sets none. */
  readonly lowBalanceThresholdMinor: Minor;
  /** R4: how often an overdue reminder may repeat during protection. */
  readonly overdueReminder: ReminderPeriod;
  /** R4: quota for accounts that do not set their own. */
  readonly defaultProtection: ProtectionQuota;
  /** R6: bill product codes that are this cloud's live video (others are "another product"). */
  readonly liveProducts: readonly string[];
  /** R9: studio instance released this long after its overdue suspension (24 h). */
  readonly studioReleaseDelayMs: number;
  /** R9: warning sent this long before the release (2 h). */
  readonly studioReleaseWarningMs: number;
  /** R10: default quota alert thresholds, most lenient first or in any order. */
  readonly planThresholds: readonly PlanThreshold[];
  /** R10: expiry reminders this long before a plan expires (7 d and 1 d). */
  readonly planExpiryReminderMs: readonly number[];
  /** R1: a pay-as-you-go revert notice is sent for plans that ended at most this long ago. */
  readonly revertNoticeWindowMs: number;
  /** SMS quiet hours in the account's zone. */
  readonly quietHours: QuietHours;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const DEFAULT_RULES: RuleSettings = {
  lowBalanceReminder: { kind: 'local-day' },
  lowBalanceThresholdMinor: 10_000,
  overdueReminder: { kind: 'local-day' },
  defaultProtection: { amountMinor: 5_000, durationMs: null },
  liveProducts: ['live'],
  studioReleaseDelayMs: DAY,
  studioReleaseWarningMs: 2 * HOUR,
  planThresholds: [
    { kind: 'percent', percent: 20 },
    { kind: 'percent', percent: 5 },
  ],
  planExpiryReminderMs: [7 * DAY, DAY],
  revertNoticeWindowMs: 7 * DAY,
  quietHours: { startMinute: 22 * 60, endMinute: 8 * 60 },
};
