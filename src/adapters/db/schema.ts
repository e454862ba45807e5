import { sql, type SQL } from 'drizzle-orm';
import { ENFORCEMENT_MODES } from '../../domain/modes';
import {
  bigint,
  bigserial,
  boolean,
  char,
  check,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  unique,
  type AnyPgColumn,
  type PgTableExtraConfigValue,
} from 'drizzle-orm/pg-core';
import { CURRENCY_PATTERN, LOCALE_PATTERN, PHONE_PATTERN } from '../../domain/formats';
import { ID_PATTERN } from '../../domain/ids';
import { FINAL_NOTIFICATION_STATUSES } from '../../notify/send-rules';

/**
 * The tables this daemon owns. This file is the contract with the billing system of record:
 *
 * - The billing system writes `accounts` (contact, preferences, balance, protection quota),
 *   `bills`, `services` (creation), `studio_instances` (creation, `streaming`), `resource_plans`,
 *   `sdk_licenses`, `orders` and `usage_records`.
 * - The daemon writes the enforcement columns of `accounts` (`enforcement_state`, `episode_*`,
 *   `version`), the hold/status columns of `services` and the release columns of
 *   `studio_instances`, and owns `enforcement_events`, `outbox` and `notifications` entirely.
 *
 * Conventions:
 * - Money is `bigint` integer minor units of the account's currency (`*_minor`), never a float.
 *   Read as JS numbers, so every amount is also checked to stay within ±(2^53 − 1).
 * - Instants are `timestamptz` (UTC instants), read as `Date`.
 * - Ids written by the billing system match `^[A-Za-z0-9_.-]{1,64}$`: they become parts of
 *   idempotency keys and BullMQ job ids, where ':' is a separator and must not appear.
 * - Enumerations are `text` + a CHECK constraint (no Postgres enum types), so adding a value is
 *   a plain constraint change, not an `ALTER TYPE` that cannot run inside a transaction.
 * - `created_at` / `updated_at` default to the transaction's `now()`; drizzle sets `updated_at`
 *   on every update it issues, other writers must set it themselves.
 */

// ---------------------------------------------------------------------------------------------
// Enumerations (shared with the repositories, which assert they equal the domain's unions).

export const ENFORCEMENT_STATES = ['active', 'protected', 'suspended'] as const;
export const BILL_STATUSES = ['unpaid', 'paid', 'void'] as const;
export const SERVICE_KINDS = ['streaming', 'recording', 'screenshots', 'studio', 'other'] as const;
export const PLAN_TYPES = ['payg', 'duration'] as const;
export const SERVICE_STATUSES = ['active', 'suspended', 'released'] as const;
export const SDK_LICENSE_KINDS = ['license', 'yearly-subscription'] as const;
export const ORDER_PRODUCT_TYPES = ['payg', 'resource-plan', 'sdk-license', 'yearly-sdk'] as const;
/**
 * pending → dispatched (relayed) → done | failed | superseded (no longer wanted, with the
 * reason in last_error). Every move is made by src/adapters/db/outbox-store.ts.
 */
export const OUTBOX_STATUSES = ['pending', 'dispatched', 'done', 'failed', 'superseded'] as const;
export const NOTIFICATION_CHANNELS = ['email', 'sms'] as const;
/** A message waits (`pending`), is with a sender (`sending`), then ends in a final status. */
export const NOTIFICATION_STATUSES = [
  'pending',
  'sending',
  ...FINAL_NOTIFICATION_STATUSES,
] as const;

/** Largest integer a JS number holds exactly; bigint columns read in `mode: 'number'`. */
const MAX_SAFE = '9007199254740991';

// ---------------------------------------------------------------------------------------------
// Check helpers. Literals are inlined with sql.raw: drizzle-kit cannot bind parameters in DDL,
// and every value here is a constant of this file.

function quoted(value: string): SQL {
  return sql.raw(`'${value.replaceAll("'", "''")}'`);
}

function oneOf(column: AnyPgColumn, values: readonly string[]): SQL {
  return sql`${column} in (${sql.join(values.map(quoted), sql.raw(', '))})`;
}

function idCheck(name: string, column: AnyPgColumn): ReturnType<typeof check> {
  return check(name, sql`${column} ~ ${quoted(ID_PATTERN)}`);
}

function nullableIdCheck(name: string, column: AnyPgColumn): ReturnType<typeof check> {
  return check(name, sql`${column} is null or ${column} ~ ${quoted(ID_PATTERN)}`);
}

/** Non-negative and exactly representable as a JS number. */
function nonNegativeSafe(column: AnyPgColumn): SQL {
  return sql`${column} between 0 and ${sql.raw(MAX_SAFE)}`;
}

function safe(column: AnyPgColumn): SQL {
  return sql`${column} between -${sql.raw(MAX_SAFE)} and ${sql.raw(MAX_SAFE)}`;
}

/** Short, non-blank code such as a product or plan kind. */
function codeCheck(name: string, column: AnyPgColumn): ReturnType<typeof check> {
  return check(name, sql`length(${column}) between 1 and 64 and ${column} !~ '\\s'`);
}

const createdAt = () =>
  timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const updatedAt = () =>
  timestamp('updated_at', { withTimezone: true, mode: 'date' })
    .notNull()
    .defaultNow()
    .$onUpdateFn(() => sql`now()`);
const instant = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });
const minor = (name: string) => bigint(name, { mode: 'number' });

/**
 * The billing system's version of a record (grows with each change of that record) and the hash
 * of the body it was ingested with. Ingest applies a record only when its version is newer than
 * the stored one; a trigger (migration 0006) refuses any update that lowers the version, whoever
 * writes. `source_hash` is null for rows written straight into the table.
 */
const sourceColumns = () => ({
  sourceVersion: bigint('source_version', { mode: 'number' }).notNull().default(0),
  sourceHash: text('source_hash'),
});

function sourceVersionCheck(table: string, column: AnyPgColumn): ReturnType<typeof check> {
  return check(`${table}_source_version_safe`, nonNegativeSafe(column));
}

/** Id and owning account of a record the billing system writes. */
const ownedRecord = () => ({
  id: text('id').primaryKey(),
  accountId: text('account_id')
    .notNull()
    .references(() => accounts.id),
});

/** Source version and hash, and when the row was created and last changed. */
const recordTail = () => ({ ...sourceColumns(), createdAt: createdAt(), updatedAt: updatedAt() });

/** Checks of every versioned record with an id of its own: `<table>_source_version_safe`, `<table>_id_format`. */
function recordChecks(
  table: string,
  t: { sourceVersion: AnyPgColumn; id: AnyPgColumn },
): ReturnType<typeof check>[] {
  return [sourceVersionCheck(table, t.sourceVersion), idCheck(`${table}_id_format`, t.id)];
}

/**
 * `<prefix>_same_account_fk`: a reference to a row of the same account: (column, account_id) →
 * (its id, its account_id).
 */
function sameAccountFk(
  prefix: string,
  column: AnyPgColumn,
  accountId: AnyPgColumn,
  target: { id: AnyPgColumn; accountId: AnyPgColumn },
) {
  return foreignKey({
    name: `${prefix}_same_account_fk`,
    columns: [column, accountId],
    foreignColumns: [target.id, target.accountId],
  });
}

/** `<table>_id_account_unique`: the target of same-account foreign keys. */
function idAccountUnique(table: string, t: { id: AnyPgColumn; accountId: AnyPgColumn }) {
  return unique(`${table}_id_account_unique`).on(t.id, t.accountId);
}

/** A nullable amount column: null, or non-negative and exactly representable. */
function nullableNonNegativeSafe(column: AnyPgColumn): SQL {
  return sql`${column} is null or ${nonNegativeSafe(column)}`;
}

/** At least 1 and exactly representable. */
function positiveSafe(column: AnyPgColumn): SQL {
  return sql`${column} between 1 and ${sql.raw(MAX_SAFE)}`;
}

/** A nullable JSON column holding an array (or object). */
function nullableJsonOf(column: AnyPgColumn, type: 'array' | 'object'): SQL {
  return sql`${column} is null or jsonb_typeof(${column}) = ${quoted(type)}`;
}

/** A key used as a BullMQ job id or a provider's key: 1 to 255 characters, no ':'. */
function keyFormat(column: AnyPgColumn): SQL {
  return sql`length(${column}) between 1 and 255 and position(':' in ${column}) = 0`;
}

// ---------------------------------------------------------------------------------------------

/**
 * One customer account. Written by the billing system except the enforcement columns
 * (`enforcement_state`, `episode_seq`, `episode_started_at`, `last_episode_ended_at`, `version`),
 * which only the daemon writes.
 */
export const accounts = pgTable(
  'accounts',
  {
    id: text('id').primaryKey(),
    /** ISO 4217 code, upper case; every `*_minor` amount of the account is in it. */
    currency: char('currency', { length: 3 }).notNull(),
    /** Available (prepaid) balance, minor units; negative when usage outran it. */
    availableBalanceMinor: minor('available_balance_minor').notNull().default(0),
    /** IANA zone name for local-day reminders and business days (validated when loaded). */
    timeZone: text('time_zone').notNull().default('UTC'),
    /** BCP 47 tag for message templates. */
    locale: text('locale').notNull().default('en'),

    // Contact and channel preferences (R3): a channel is used only when its preference is on,
    // its address is present and not known to be unreachable.
    email: text('email'),
    /** E.164, e.g. +8613800000000. */
    phone: text('phone'),
    notifyEmail: boolean('notify_email').notNull().default(true),
    notifySms: boolean('notify_sms').notNull().default(true),
    /** The customer replied STOP (or the provider reports the number unsubscribed). */
    smsOptedOut: boolean('sms_opted_out').notNull().default(false),
    /** The address hard-bounced; email is not used until the billing system clears it. */
    emailBounced: boolean('email_bounced').notNull().default(false),

    /** R3 threshold, minor units; null uses the rule default. */
    lowBalanceThresholdMinor: minor('low_balance_threshold_minor'),

    // R4 suspension protection. protection_custom = false: the rule default applies and both
    // columns are null. true: the columns are the quota (a null column is not applied; both null
    // means no protection at all).
    protectionCustom: boolean('protection_custom').notNull().default(false),
    /** Protected while the overdue amount is at most this, minor units. */
    protectionAmountMinor: minor('protection_amount_minor'),
    /** Protected while at most this many seconds passed since the episode started. */
    protectionDurationSeconds: integer('protection_duration_seconds'),

    /** R10 account-level thresholds: JSON array of {kind:'percent',percent}|{kind:'units',units}. */
    planAlertThresholds: jsonb('plan_alert_thresholds'),

    // Daemon-owned enforcement state.
    enforcementState: text('enforcement_state', { enum: ENFORCEMENT_STATES })
      .notNull()
      .default('active'),
    /** Sequence number of the last overdue episode opened (0: never overdue). */
    episodeSeq: integer('episode_seq').notNull().default(0),
    /** Start of the open episode `episode_seq`; null when no episode is open. */
    episodeStartedAt: instant('episode_started_at'),
    lastEpisodeEndedAt: instant('last_episode_ended_at'),
    /**
     * Earliest due instant of a bill with money still owed; maintained by a trigger on `bills`
     * (migration 0002), never written by hand. Lets the scan find overdue accounts from this
     * table alone.
     */
    earliestUnpaidDueAt: instant('earliest_unpaid_due_at'),
    /**
     * End of the reminder window in which the last low-balance reminder went out (R3). Until
     * then the scan skips the account for low balance: the window's reminder is already sent.
     * Written by the daemon.
     */
    lowBalanceQuietUntil: instant('low_balance_quiet_until'),
    /**
     * In good standing with the available balance below the low-balance threshold (R3), as of
     * the last evaluation. Written by the daemon; the console's overview counts it.
     */
    lowBalance: boolean('low_balance').notNull().default(false),
    /**
     * When the daemon last evaluated the account. The periodic scan re-evaluates an account
     * that is already handled (suspended, protected, overdue) only every SCAN_RECHECK_INTERVAL,
     * unless a bill fell due after that evaluation. Written by the daemon.
     */
    evaluatedAt: instant('evaluated_at'),
    /** Bumped on every write (daemon and upsert helpers) for optimistic checks. */
    version: integer('version').notNull().default(0),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('accounts', t),
    check('accounts_currency_format', sql`${t.currency} ~ ${quoted(CURRENCY_PATTERN)}`),
    check('accounts_balance_safe', safe(t.availableBalanceMinor)),
    check('accounts_time_zone_format', sql`length(${t.timeZone}) between 1 and 64`),
    check('accounts_locale_format', sql`${t.locale} ~ ${quoted(LOCALE_PATTERN)}`),
    check('accounts_email_format', sql`${t.email} is null or ${t.email} ~ '^[^@\\s]+@[^@\\s]+$'`),
    check('accounts_phone_e164', sql`${t.phone} is null or ${t.phone} ~ ${quoted(PHONE_PATTERN)}`),
    check(
      'accounts_low_balance_threshold_safe',
      nullableNonNegativeSafe(t.lowBalanceThresholdMinor),
    ),
    check(
      'accounts_protection_amount_non_negative',
      nullableNonNegativeSafe(t.protectionAmountMinor),
    ),
    check(
      'accounts_protection_duration_positive',
      sql`${t.protectionDurationSeconds} is null or ${t.protectionDurationSeconds} > 0`,
    ),
    check(
      'accounts_protection_only_when_custom',
      sql`${t.protectionCustom} or (${t.protectionAmountMinor} is null and ${t.protectionDurationSeconds} is null)`,
    ),
    check('accounts_plan_alert_thresholds_array', nullableJsonOf(t.planAlertThresholds, 'array')),
    check('accounts_enforcement_state', oneOf(t.enforcementState, ENFORCEMENT_STATES)),
    check('accounts_episode_seq_non_negative', sql`${t.episodeSeq} >= 0`),
    check(
      'accounts_open_episode_has_seq',
      sql`${t.episodeStartedAt} is null or ${t.episodeSeq} > 0`,
    ),
    check('accounts_version_non_negative', sql`${t.version} >= 0`),
    /** Console search: account id by prefix (the primary key's collation cannot serve LIKE). */
    index('accounts_id_prefix_idx').on(t.id.op('text_pattern_ops')),
    /** Console search: email, case-insensitive, exact or by prefix. */
    index('accounts_email_prefix_idx').on(sql`lower(${t.email}) text_pattern_ops`),
    /** Console search: phone (E.164), exact or by prefix. */
    index('accounts_phone_prefix_idx').on(t.phone.op('text_pattern_ops')),
    /** Console overview: accounts out of good standing, by state (few, so a small index). */
    index('accounts_enforcement_state_idx')
      .on(t.enforcementState)
      .where(sql`${t.enforcementState} <> 'active'`),
    /** Console overview: accounts with a low balance (a partial index of those only). */
    index('accounts_low_balance_idx')
      .on(t.id)
      .where(sql`${t.lowBalance}`),
  ],
);

/**
 * A bill issued by the billing system, any product (R2/R6: all unpaid bills count). Amounts in
 * minor units of the account's currency. `paid_minor` may exceed `amount_minor` (overpaid: owes
 * nothing). Written by the billing system only.
 */
export const bills = pgTable(
  'bills',
  {
    ...ownedRecord(),
    /** Product code, e.g. "live", "oss". */
    product: text('product').notNull(),
    amountMinor: minor('amount_minor').notNull(),
    paidMinor: minor('paid_minor').notNull().default(0),
    issuedAt: instant('issued_at').notNull(),
    dueAt: instant('due_at').notNull(),
    status: text('status', { enum: BILL_STATUSES }).notNull().default('unpaid'),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('bills', t),
    codeCheck('bills_product_format', t.product),
    check('bills_amount_non_negative', nonNegativeSafe(t.amountMinor)),
    check('bills_paid_non_negative', nonNegativeSafe(t.paidMinor)),
    check('bills_due_after_issue', sql`${t.dueAt} >= ${t.issuedAt}`),
    check('bills_status', oneOf(t.status, BILL_STATUSES)),
    /** Snapshot load: unpaid bills of one account. */
    index('bills_account_unpaid_idx')
      .on(t.accountId)
      .where(sql`${t.status} = 'unpaid'`),
    /** R12 billing details by period. */
    index('bills_account_issued_idx').on(t.accountId, t.issuedAt),
    /** Balance scan: accounts with unpaid bills past due, by due date. */
    index('bills_unpaid_due_idx')
      .on(t.dueAt, t.accountId)
      .where(sql`${t.status} = 'unpaid'`),
  ],
);

/**
 * A service of an account. The billing system creates rows; the daemon (or, in database-only
 * control-plane mode, this table itself is the effect) writes status, holds and their instants.
 * Invariant: unless released, status is 'suspended' exactly when some hold is set.
 */
export const services = pgTable(
  'services',
  {
    ...ownedRecord(),
    kind: text('kind', { enum: SERVICE_KINDS }).notNull(),
    planType: text('plan_type', { enum: PLAN_TYPES }).notNull().default('payg'),
    status: text('status', { enum: SERVICE_STATUSES }).notNull().default('active'),
    /** Held by overdue enforcement (R5/R9); lifted by R7. */
    overdueHold: boolean('overdue_hold').notNull().default(false),
    /** Held by an operator; never lifted by R7. */
    operatorHold: boolean('operator_hold').notNull().default(false),
    /** Episode whose enforcement set `overdue_hold`. */
    overdueEpisodeSeq: integer('overdue_episode_seq'),
    suspendedAt: instant('suspended_at'),
    resumedAt: instant('resumed_at'),
    releasedAt: instant('released_at'),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('services', t),
    check('services_kind', oneOf(t.kind, SERVICE_KINDS)),
    check('services_plan_type', oneOf(t.planType, PLAN_TYPES)),
    check('services_status', oneOf(t.status, SERVICE_STATUSES)),
    check(
      'services_suspended_iff_held',
      sql`${t.status} = 'released' or ((${t.status} = 'suspended') = (${t.overdueHold} or ${t.operatorHold}))`,
    ),
    check(
      'services_released_at_iff_released',
      sql`(${t.status} = 'released') = (${t.releasedAt} is not null)`,
    ),
    check(
      'services_overdue_hold_has_episode',
      sql`not ${t.overdueHold} or ${t.overdueEpisodeSeq} is not null`,
    ),
    check(
      'services_overdue_episode_seq_positive',
      sql`${t.overdueEpisodeSeq} is null or ${t.overdueEpisodeSeq} > 0`,
    ),
    /** Target of same-account composite foreign keys. */
    idAccountUnique('services', t),
    index('services_account_idx').on(t.accountId),
  ],
);

/**
 * A production-studio instance (R9), belonging to a studio service of the same account. The
 * billing system creates it and maintains `streaming`; the daemon sets the release columns.
 * `release_due_at` and `release_episode_seq` are set together at the overdue suspension.
 */
export const studioInstances = pgTable(
  'studio_instances',
  {
    ...ownedRecord(),
    serviceId: text('service_id').notNull(),
    name: text('name').notNull(),
    /** Pushing a live stream right now (keeps billing while suspended). */
    streaming: boolean('streaming').notNull().default(false),
    releaseDueAt: instant('release_due_at'),
    releaseEpisodeSeq: integer('release_episode_seq'),
    /** Release is final. */
    releasedAt: instant('released_at'),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('studio_instances', t),
    check('studio_instances_name_not_blank', sql`length(btrim(${t.name})) between 1 and 200`),
    check(
      'studio_instances_release_pending_pair',
      sql`(${t.releaseDueAt} is null) = (${t.releaseEpisodeSeq} is null)`,
    ),
    check(
      'studio_instances_release_episode_seq_positive',
      sql`${t.releaseEpisodeSeq} is null or ${t.releaseEpisodeSeq} > 0`,
    ),
    sameAccountFk('studio_instances_service', t.serviceId, t.accountId, services),
    index('studio_instances_account_idx').on(t.accountId),
    /** Release scheduler rebuild (after Redis data loss) and due-release scans. */
    index('studio_instances_release_due_idx')
      .on(t.releaseDueAt)
      .where(sql`${t.releasedAt} is null and ${t.releaseDueAt} is not null`),
  ],
);

/**
 * An SDK license (R11) bought by the account. Written by the billing system; `activated_at` makes
 * the license, and a resource plan bundled with it, non-refundable.
 */
export const sdkLicenses = pgTable(
  'sdk_licenses',
  {
    ...ownedRecord(),
    kind: text('kind', { enum: SDK_LICENSE_KINDS }).notNull(),
    activatedAt: instant('activated_at'),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('sdk_licenses', t),
    check('sdk_licenses_kind', oneOf(t.kind, SDK_LICENSE_KINDS)),
    idAccountUnique('sdk_licenses', t),
    index('sdk_licenses_account_idx').on(t.accountId),
  ],
);

/**
 * A purchase (R11/R12). Written by the billing system. Paid parts are minor units: only
 * `cash_paid_minor` (cash / debit card) is refundable. `promotion_rules` (JSON object) overrides
 * the refund rules where they conflict; `gifts` is a JSON array voided by a refund.
 */
export const orders = pgTable(
  'orders',
  {
    ...ownedRecord(),
    productType: text('product_type', { enum: ORDER_PRODUCT_TYPES }).notNull(),
    cashPaidMinor: minor('cash_paid_minor').notNull().default(0),
    voucherPaidMinor: minor('voucher_paid_minor').notNull().default(0),
    couponPaidMinor: minor('coupon_paid_minor').notNull().default(0),
    promotionId: text('promotion_id'),
    promotionRules: jsonb('promotion_rules').$type<Record<string, unknown>>(),
    gifts: jsonb('gifts')
      .$type<unknown[]>()
      .notNull()
      .default(sql`'[]'::jsonb`),
    resourcePlanId: text('resource_plan_id'),
    sdkLicenseId: text('sdk_license_id'),
    ...sourceColumns(),
    createdAt: createdAt(),
    refundedAt: instant('refunded_at'),
  },
  // Annotated: orders and resource_plans reference each other.
  (t): PgTableExtraConfigValue[] => [
    ...recordChecks('orders', t),
    check('orders_product_type', oneOf(t.productType, ORDER_PRODUCT_TYPES)),
    check('orders_cash_paid_non_negative', nonNegativeSafe(t.cashPaidMinor)),
    check('orders_voucher_paid_non_negative', nonNegativeSafe(t.voucherPaidMinor)),
    check('orders_coupon_paid_non_negative', nonNegativeSafe(t.couponPaidMinor)),
    nullableIdCheck('orders_promotion_id_format', t.promotionId),
    check('orders_promotion_rules_object', nullableJsonOf(t.promotionRules, 'object')),
    check('orders_gifts_array', sql`jsonb_typeof(${t.gifts}) = 'array'`),
    check(
      'orders_refund_after_creation',
      sql`${t.refundedAt} is null or ${t.refundedAt} >= ${t.createdAt}`,
    ),
    idAccountUnique('orders', t),
    sameAccountFk('orders_resource_plan', t.resourcePlanId, t.accountId, resourcePlans),
    sameAccountFk('orders_sdk_license', t.sdkLicenseId, t.accountId, sdkLicenses),
    index('orders_account_created_idx').on(t.accountId, t.createdAt),
  ],
);

/**
 * A resource plan (R1/R10): a prepaid quota of `total_units` of one resource `kind`, valid in
 * [starts_at, expires_at). Units are the resource's integer unit (minutes, GB, ...). Written by the
 * billing system, which also maintains `used_units` (≤ total: usage beyond is pay-as-you-go).
 */
export const resourcePlans = pgTable(
  'resource_plans',
  {
    ...ownedRecord(),
    /** Resource kind, e.g. "transcoding-minutes". */
    kind: text('kind').notNull(),
    totalUnits: bigint('total_units', { mode: 'number' }).notNull(),
    usedUnits: bigint('used_units', { mode: 'number' }).notNull().default(0),
    startsAt: instant('starts_at').notNull(),
    expiresAt: instant('expires_at').notNull(),
    purchasedAt: instant('purchased_at').notNull(),
    /** Per-plan R10 thresholds (same JSON shape as the account's); null uses the account's. */
    alertThresholds: jsonb('alert_thresholds'),
    /** Bundled SDK license: once activated the plan counts as fully used for refunds (R11). */
    sdkLicenseId: text('sdk_license_id'),
    orderId: text('order_id'),
    ...recordTail(),
  },
  // Annotated: orders and resource_plans reference each other.
  (t): PgTableExtraConfigValue[] => [
    ...recordChecks('resource_plans', t),
    codeCheck('resource_plans_kind_format', t.kind),
    check('resource_plans_total_non_negative', nonNegativeSafe(t.totalUnits)),
    check('resource_plans_used_non_negative', nonNegativeSafe(t.usedUnits)),
    check('resource_plans_used_within_total', sql`${t.usedUnits} <= ${t.totalUnits}`),
    check('resource_plans_expires_after_start', sql`${t.expiresAt} > ${t.startsAt}`),
    check('resource_plans_alert_thresholds_array', nullableJsonOf(t.alertThresholds, 'array')),
    idAccountUnique('resource_plans', t),
    sameAccountFk('resource_plans_sdk_license', t.sdkLicenseId, t.accountId, sdkLicenses),
    sameAccountFk('resource_plans_order', t.orderId, t.accountId, orders),
    /** Snapshot load and quota scan: live plans of an account. */
    index('resource_plans_account_expires_idx').on(t.accountId, t.expiresAt),
  ],
);

/**
 * Raw usage (R12: reference only, not for reconciliation). Written by the billing system;
 * `source_id` is the writer's own id, unique per account so re-sending a batch is idempotent.
 * `quantity` is an integer count of the metric's unit.
 */
export const usageRecords = pgTable(
  'usage_records',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    accountId: text('account_id')
      .notNull()
      .references(() => accounts.id),
    product: text('product').notNull(),
    metric: text('metric').notNull(),
    quantity: bigint('quantity', { mode: 'number' }).notNull(),
    recordedAt: instant('recorded_at').notNull(),
    sourceId: text('source_id').notNull(),
    ...sourceColumns(),
    createdAt: createdAt(),
  },
  (t) => [
    sourceVersionCheck('usage_records', t.sourceVersion),
    codeCheck('usage_records_product_format', t.product),
    codeCheck('usage_records_metric_format', t.metric),
    check('usage_records_quantity_non_negative', nonNegativeSafe(t.quantity)),
    idCheck('usage_records_source_id_format', t.sourceId),
    unique('usage_records_account_source_unique').on(t.accountId, t.sourceId),
    index('usage_records_account_recorded_idx').on(t.accountId, t.recordedAt),
  ],
);

/**
 * A payment received by the billing system (R7: the only source of paid amounts), ingested through
 * `/v1/ingest/payments`. `allocations` is what the pure allocator (src/domain/payments.ts) did with
 * it: `[{billId, amountMinor}]` paid on bills, plus `balance_credit_minor` credited to the
 * available balance; a reversal undoes exactly that. Null `allocations`: recorded before
 * allocations were kept (migration 0006 backfilled those from the events). Written by the daemon.
 */
export const payments = pgTable(
  'payments',
  {
    ...ownedRecord(),
    amountMinor: minor('amount_minor').notNull(),
    /** The bill the payer named; null: oldest due unpaid bills first. */
    billId: text('bill_id'),
    allocations: jsonb('allocations').$type<{ billId: string; amountMinor: number }[]>(),
    balanceCreditMinor: minor('balance_credit_minor').notNull().default(0),
    /** The reversal (chargeback, bounced transfer) that undid this payment. */
    reversedBy: text('reversed_by'),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('payments', t),
    check('payments_amount_positive', positiveSafe(t.amountMinor)),
    check('payments_balance_credit_safe', nonNegativeSafe(t.balanceCreditMinor)),
    check('payments_allocations_array', nullableJsonOf(t.allocations, 'array')),
    index('payments_account_idx').on(t.accountId),
  ],
);

/** A top-up of the available balance, ingested through `/v1/ingest/topups`. Written by the daemon. */
export const topups = pgTable(
  'topups',
  {
    ...ownedRecord(),
    amountMinor: minor('amount_minor').notNull(),
    ...recordTail(),
  },
  (t) => [
    ...recordChecks('topups', t),
    check('topups_amount_positive', positiveSafe(t.amountMinor)),
    index('topups_account_idx').on(t.accountId),
  ],
);

/**
 * A payment reversal (chargeback, bounced transfer), ingested through
 * `/v1/ingest/payment-reversals`: undoes exactly its payment's allocation. At most one per payment.
 */
export const paymentReversals = pgTable(
  'payment_reversals',
  {
    ...ownedRecord(),
    paymentId: text('payment_id')
      .notNull()
      .unique('payment_reversals_payment_unique')
      .references(() => payments.id),
    reason: text('reason'),
    ...recordTail(),
  },
  (t) => [...recordChecks('payment_reversals', t)],
);

/**
 * Append-only audit log of what the daemon decided and did. Written by the daemon (and operators
 * through it). No foreign key on `account_id`: events about unknown or malformed accounts must be
 * recordable too. `idempotency_key`, when set, makes appending the same event twice a no-op.
 */
export const enforcementEvents = pgTable(
  'enforcement_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    accountId: text('account_id').notNull(),
    kind: text('kind').notNull(),
    episodeSeq: integer('episode_seq'),
    detail: jsonb('detail')
      .$type<Record<string, unknown>>()
      .notNull()
      .default(sql`'{}'::jsonb`),
    /** 'daemon', or the operator who triggered it by hand. */
    actor: text('actor').notNull().default('daemon'),
    idempotencyKey: text('idempotency_key').unique('enforcement_events_idempotency_key_unique'),
    createdAt: createdAt(),
  },
  (t) => [
    codeCheck('enforcement_events_kind_format', t.kind),
    check('enforcement_events_actor_not_blank', sql`length(btrim(${t.actor})) between 1 and 200`),
    index('enforcement_events_account_created_idx').on(t.accountId, t.createdAt),
    /** Console overview: suspensions and resumes per hour, read from the index alone. */
    index('enforcement_events_service_changes_idx')
      .on(t.createdAt, t.kind)
      .where(sql`${t.kind} in ('service-suspended', 'service-resumed')`),
    /** Retention: the oldest events first. */
    index('enforcement_events_created_idx').on(t.createdAt),
  ],
);

/**
 * Transactional outbox, written by the daemon in the same transaction as the decision that causes
 * the effect; the relay turns rows into BullMQ jobs with `idempotency_key` as the job id (hence no
 * ':'). The unique key is the authority on "already done". No foreign key: an effect row must never
 * block, nor be deleted by, the billing system's account changes.
 */
export const outbox = pgTable(
  'outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    idempotencyKey: text('idempotency_key').notNull().unique('outbox_idempotency_key_unique'),
    kind: text('kind').notNull(),
    accountId: text('account_id').notNull(),
    payload: jsonb('payload')
      .$type<Record<string, unknown>>()
      .notNull()
      .default(sql`'{}'::jsonb`),
    status: text('status', { enum: OUTBOX_STATUSES }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    /** Not relayed before this instant (delayed effects, relay backoff). */
    availableAt: instant('available_at').notNull().defaultNow(),
    lastError: text('last_error'),
    /**
     * Lease of an effect's holder (control-plane calls): a random token and an expiry on the
     * database's clock. The outcome is recorded only under the holder's token.
     */
    claimToken: text('claim_token'),
    claimExpiresAt: instant('claim_expires_at'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check('outbox_idempotency_key_format', keyFormat(t.idempotencyKey)),
    codeCheck('outbox_kind_format', t.kind),
    check('outbox_status', oneOf(t.status, OUTBOX_STATUSES)),
    check('outbox_attempts_non_negative', sql`${t.attempts} >= 0`),
    /** Relay poll: pending rows by availability. */
    index('outbox_pending_available_idx')
      .on(t.availableAt)
      .where(sql`${t.status} = 'pending'`),
    /** Reconcile walks the dispatched rows by id: its cost follows what is owed, not the table. */
    index('outbox_dispatched_id_idx')
      .on(t.id)
      .where(sql`${t.status} = 'dispatched'`),
    /** Retention: finished rows by their last change. */
    index('outbox_finished_updated_idx')
      .on(t.updatedAt)
      .where(sql`${t.status} in ('done', 'failed', 'superseded')`),
    /** Console: an account's effects, newest first. */
    index('outbox_account_id_idx').on(t.accountId, t.id),
    /** Console overview: failed effects, most recent first (few). */
    index('outbox_failed_updated_idx')
      .on(t.updatedAt)
      .where(sql`${t.status} = 'failed'`),
    /** Per service, only the oldest unfinished control-plane effect may be claimed. */
    index('outbox_unfinished_effect_service_idx')
      .on(sql`(${t.payload} ->> 'serviceId')`, t.id)
      .where(sql`${t.kind} = 'control-plane' and ${t.status} in ('pending', 'dispatched')`),
  ],
);

/**
 * One message to one customer on one channel, written by the daemon. `dedupe_key` (derived from
 * the decision's idempotency key and the channel) makes a message unique: a retried or duplicated
 * job never sends twice. `recipient` is personal data: never log it. Same no-FK reason as outbox.
 */
export const notifications = pgTable(
  'notifications',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    dedupeKey: text('dedupe_key').notNull().unique('notifications_dedupe_key_unique'),
    accountId: text('account_id').notNull(),
    channel: text('channel', { enum: NOTIFICATION_CHANNELS }).notNull(),
    template: text('template').notNull(),
    locale: text('locale').notNull(),
    /** Email address or E.164 phone number at the time of the decision. */
    recipient: text('recipient').notNull(),
    params: jsonb('params')
      .$type<Record<string, unknown>>()
      .notNull()
      .default(sql`'{}'::jsonb`),
    status: text('status', { enum: NOTIFICATION_STATUSES }).notNull().default('pending'),
    /** Which provider adapter sent it (e.g. "smtp", "twilio", "file"). */
    providerId: text('provider_id'),
    /** The provider's message id, used to match delivery callbacks. */
    messageId: text('message_id'),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    /** Not sent before this instant (SMS quiet hours, rate limits, backoff). */
    notBefore: instant('not_before').notNull().defaultNow(),
    sentAt: instant('sent_at'),
    deliveredAt: instant('delivered_at'),
    /**
     * The sender attempt that holds the row while it talks to the provider, and until when (the
     * database's clock). Another attempt may take a `sending` row over only after the lease ran
     * out (its holder died or hung), and then reconciles before sending.
     */
    claimToken: text('claim_token'),
    claimExpiresAt: instant('claim_expires_at'),
    /**
     * When an operator last sent a failed message back to pending: its give-up age
     * (NOTIFY_GIVE_UP_AFTER) counts from then instead of from `created_at`.
     */
    retriedAt: instant('retried_at'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check('notifications_dedupe_key_format', keyFormat(t.dedupeKey)),
    check('notifications_channel', oneOf(t.channel, NOTIFICATION_CHANNELS)),
    codeCheck('notifications_template_format', t.template),
    check('notifications_status', oneOf(t.status, NOTIFICATION_STATUSES)),
    check('notifications_attempts_non_negative', sql`${t.attempts} >= 0`),
    check('notifications_recipient_not_blank', sql`length(btrim(${t.recipient})) > 0`),
    /** Sender poll: pending messages by earliest send time. */
    index('notifications_pending_not_before_idx')
      .on(t.notBefore)
      .where(sql`${t.status} = 'pending'`),
    /**
     * The sender's re-check at send time reads the account's notices of one episode (ordering,
     * superseded suspension notices); also the account timeline's lookup.
     */
    index('notifications_account_episode_idx').on(t.accountId, sql`(${t.params} ->> 'episodeSeq')`),
    /** Delivery callbacks look messages up by provider message id. */
    index('notifications_provider_message_idx')
      .on(t.providerId, t.messageId)
      .where(sql`${t.messageId} is not null`),
    /** Console: an account's messages, newest first. */
    index('notifications_account_id_idx').on(t.accountId, t.id),
    /** Console overview: messages that failed, most recent first (few). */
    index('notifications_failed_updated_idx')
      .on(t.updatedAt)
      .where(sql`${t.status} in ('failed', 'undeliverable')`),
    /** Retention: final rows by their last change. */
    index('notifications_final_updated_idx')
      .on(t.updatedAt)
      .where(oneOf(t.status, FINAL_NOTIFICATION_STATUSES)),
  ],
);

export const SMS_CALLBACK_TARGETS = ['sent', 'delivered', 'undeliverable'] as const;

/**
 * A delivery status callback that arrived before the sender recorded the provider's message id
 * (the provider can answer a status faster than the sender's row update commits). Kept until the
 * sender records that id, which applies it, or for a day (then dropped with a log line).
 */
export const smsEarlyCallbacks = pgTable(
  'sms_early_callbacks',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    providerId: text('provider_id').notNull(),
    messageId: text('message_id').notNull(),
    status: text('status', { enum: SMS_CALLBACK_TARGETS }).notNull(),
    errorCode: text('error_code'),
    receivedAt: timestamp('received_at', { withTimezone: true, mode: 'date' })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    check('sms_early_callbacks_status', oneOf(t.status, SMS_CALLBACK_TARGETS)),
    unique('sms_early_callbacks_message_status_unique').on(t.providerId, t.messageId, t.status),
    index('sms_early_callbacks_received_idx').on(t.receivedAt),
  ],
);

/**
 * The fleet's enforcement mode (one row, id 1): `enforce` acts; `shadow` decides and records what
 * it would do (shadow events) but writes no state change, calls nothing and sends nothing; `off`
 * stops scans and evaluations. Every daemon reads it in the statements that evaluate and that
 * claim effects and messages, so a change applies to everything that has not left the outbox yet.
 * `source` is 'config' while ENFORCEMENT_MODE decides it (a daemon start writes it), 'operator'
 * once an operator set it (then a start leaves it as it is).
 */
export const controlState = pgTable(
  'control_state',
  {
    id: integer('id').primaryKey(),
    enforcementMode: text('enforcement_mode', { enum: ENFORCEMENT_MODES })
      .notNull()
      .default('enforce'),
    source: text('source', { enum: ['config', 'operator'] })
      .notNull()
      .default('config'),
    changedBy: text('changed_by').notNull().default('config'),
    reason: text('reason'),
    /** Grows by one with each change: a change can be made conditional on the version read. */
    version: bigint('version', { mode: 'number' }).notNull().default(1),
    changedAt: timestamp('changed_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [
    check('control_state_single_row', sql`${t.id} = 1`),
    check('control_state_mode', oneOf(t.enforcementMode, ENFORCEMENT_MODES)),
    check('control_state_source', sql`${t.source} in ('config', 'operator')`),
  ],
);

/**
 * Fleet-wide operator and daemon actions that are about no single account (a mode change, and
 * later pauses and breaker decisions): who, why, what changed. Append-only.
 */
export const controlEvents = pgTable(
  'control_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    kind: text('kind').notNull(),
    detail: jsonb('detail')
      .$type<Record<string, unknown>>()
      .notNull()
      .default(sql`'{}'::jsonb`),
    actor: text('actor').notNull(),
    reason: text('reason'),
    createdAt: createdAt(),
  },
  (t) => [
    codeCheck('control_events_kind_format', t.kind),
    check('control_events_actor_not_blank', sql`length(btrim(${t.actor})) between 1 and 200`),
    index('control_events_created_idx').on(t.createdAt),
  ],
);

export const PAUSE_KINDS = ['suspensions', 'releases', 'messages'] as const;

/**
 * Operator pauses, one row per paused kind of effect (no row: not paused). While a kind is
 * paused its effects wait at their claim, unsent, and go out after the pause is lifted,
 * re-checked then. Resumes are never paused. Setting and lifting are `control_events`.
 */
export const controlPauses = pgTable(
  'control_pauses',
  {
    kind: text('kind', { enum: PAUSE_KINDS }).primaryKey(),
    reason: text('reason').notNull(),
    pausedBy: text('paused_by').notNull(),
    pausedAt: timestamp('paused_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [
    check('control_pauses_kind', oneOf(t.kind, PAUSE_KINDS)),
    check('control_pauses_reason_not_blank', sql`length(btrim(${t.reason})) between 1 and 500`),
  ],
);

/**
 * The mass-suspension breaker (one row, id 1; src/domain/breaker.ts). Its limits are written by
 * each daemon start from SUSPENSION_BREAKER; `tripped_at` is set by the evaluation that first
 * admits one suspension too many and cleared by an operator's reset. Every evaluation that
 * decides a suspension or a release locks this row, so admissions are counted one at a time
 * across daemons. `good_standing` caches the count of accounts in good standing (the share's
 * base), recounted when older than a minute. `alerted_seq` is the last trip the operators were
 * alerted of (once per trip, whichever daemon gets there first).
 */
export const breakerState = pgTable(
  'breaker_state',
  {
    id: integer('id').primaryKey(),
    enabled: boolean('enabled').notNull().default(true),
    countLimit: integer('count_limit').notNull().default(100),
    windowSeconds: integer('window_seconds').notNull().default(600),
    /** Percent of the accounts in good standing, in thousandths of a percent (1% = 1000). */
    shareMilliPct: integer('share_milli_pct').notNull().default(1000),
    trippedAt: timestamp('tripped_at', { withTimezone: true, mode: 'date' }),
    tripSeq: integer('trip_seq').notNull().default(0),
    alertedSeq: integer('alerted_seq').notNull().default(0),
    /** Admissions before this instant no longer count (an operator reset the breaker). */
    resetAt: timestamp('reset_at', { withTimezone: true, mode: 'date' }),
    goodStanding: bigint('good_standing', { mode: 'number' }).notNull().default(0),
    countedAt: timestamp('counted_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    check('breaker_state_single_row', sql`${t.id} = 1`),
    check('breaker_state_count_positive', sql`${t.countLimit} > 0`),
    check('breaker_state_window_positive', sql`${t.windowSeconds} > 0`),
    check('breaker_state_share_range', sql`${t.shareMilliPct} between 0 and 100000`),
    check('breaker_state_seq_order', sql`${t.alertedSeq} <= ${t.tripSeq}`),
  ],
);

export const BREAKER_LEDGER_STATUSES = ['allowed', 'held', 'approved', 'rejected'] as const;

/**
 * The breaker's ledger: one row per gated decision (by the decision's idempotency key): every
 * suspension admitted while the breaker is on (`allowed`, what the window counts) and every
 * suspension or studio release held (`held`), until an operator approves or rejects it (who,
 * when, why). Pruned with the enforcement events (RETENTION_EVENTS), held rows never.
 */
export const breakerLedger = pgTable(
  'breaker_ledger',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    decisionKey: text('decision_key').notNull(),
    accountId: text('account_id').notNull(),
    kind: text('kind', { enum: ['suspend', 'release'] }).notNull(),
    status: text('status', { enum: BREAKER_LEDGER_STATUSES }).notNull(),
    detail: jsonb('detail')
      .$type<Record<string, unknown>>()
      .notNull()
      .default(sql`'{}'::jsonb`),
    /** The trip a held row belongs to. */
    tripSeq: integer('trip_seq'),
    decidedAt: timestamp('decided_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    settledAt: timestamp('settled_at', { withTimezone: true, mode: 'date' }),
    settledBy: text('settled_by'),
    reason: text('reason'),
  },
  (t) => [
    unique('breaker_ledger_key_unique').on(t.decisionKey),
    check('breaker_ledger_kind', oneOf(t.kind, ['suspend', 'release'])),
    check('breaker_ledger_status', oneOf(t.status, BREAKER_LEDGER_STATUSES)),
    /** The window's count: suspensions admitted, by instant. */
    index('breaker_ledger_admitted_idx')
      .on(t.decidedAt)
      .where(sql`${t.kind} = 'suspend' and ${t.status} = 'allowed'`),
    /** The held list, oldest first. */
    index('breaker_ledger_held_idx')
      .on(t.id)
      .where(sql`${t.status} = 'held'`),
    /** Retention. */
    index('breaker_ledger_decided_idx').on(t.decidedAt),
  ],
);
