import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { queryRows, type Db, type Tx } from '../adapters/db/client';
import {
  bodyHash,
  ingestBills,
  ingestPaymentReversals,
  ingestPayments,
  ingestRows,
  ingestTopups,
  IngestRejected,
  openBatch,
  ACCOUNT_KEY,
  OWNED_COLUMNS,
  USAGE_KEY,
  type BatchResult,
  type IngestOptions,
  type RowItem,
  type RowKind,
} from '../adapters/db/ingest-store';
import { appendEvent } from '../adapters/db/daemon-writers';
import {
  ORDER_PRODUCT_TYPES,
  orders,
  PLAN_TYPES,
  resourcePlans,
  SDK_LICENSE_KINDS,
  SERVICE_KINDS,
} from '../adapters/db/schema';
import type { Daemon } from '../daemon';
import { CURRENCY_RE, LOCALE_RE, PHONE_RE } from '../domain/formats';
import { purchaseGuard } from '../domain/purchase-guard';
import {
  codeSchema,
  HttpError,
  idSchema,
  instantSchema,
  minorSchema,
  noteSchema,
  type Api,
} from './api';
import { actorName } from './auth';
import { unpaidBills } from './queries';
import { isValidZone } from '../domain/time';

/**
 * Ingest endpoints for the billing system of record: the facts it may also write into the tables
 * directly, posted as JSON batches (up to 1,000 items, one transaction, all or nothing).
 *
 * Version rules (src/domain/ingest.ts): every record carries the source's `version`; it is applied
 * only when newer than the stored one; the same version and body again is a duplicate; an equal
 * or older version with another body, or an id of another account, is 409 naming the id and the
 * stored version. Paid amounts come only from payments (src/domain/payments.ts allocates them)
 * and their reversals. Answers 202 with each item's result once committed (200 when every item
 * was a duplicate), even when the follow-up evaluation could not be queued: it is queued once
 * Redis answers, and the database NOTIFY and the periodic scan pick the accounts up too.
 */

const MAX_BATCH = 1_000;
const positiveMinor = minorSchema.min(1);
const signedMinor = z.int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);
const versionSchema = z
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .describe('The source system’s version of this record: grows with each change of it');
/** Instants are compared (and hashed) as UTC ISO text, whatever offset they were sent with. */
const instant = instantSchema.transform((text) => new Date(text).toISOString());
const nullableInstant = instant.nullable();

const billSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    version: versionSchema,
    product: codeSchema,
    amountMinor: minorSchema,
    issuedAt: instant,
    dueAt: instant,
    status: z
      .enum(['unpaid', 'void'])
      .default('unpaid')
      .describe(
        '`void` cancels the bill (what was paid on it goes to the balance). Paid amounts come only from payments.',
      ),
  })
  .strict()
  .refine((b) => b.dueAt >= b.issuedAt, {
    path: ['dueAt'],
    message: 'must not be before issuedAt',
  });

const paymentSchema = z
  .object({
    id: idSchema.describe('The billing system’s payment id'),
    accountId: idSchema,
    version: versionSchema,
    amountMinor: positiveMinor,
    billId: idSchema
      .optional()
      .describe(
        'Bill paid (up to what it owes; the rest goes to the balance); without it the amount pays unpaid bills earliest due first',
      ),
  })
  .strict();

const reversalSchema = z
  .object({
    id: idSchema.describe('The billing system’s id of the reversal (chargeback, bounced transfer)'),
    accountId: idSchema,
    version: versionSchema,
    paymentId: idSchema.describe('The payment whose allocation is undone'),
    reason: noteSchema.optional(),
  })
  .strict();

const topupSchema = z
  .object({ id: idSchema, accountId: idSchema, version: versionSchema, amountMinor: positiveMinor })
  .strict();

const thresholdSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('percent'), percent: z.number().gt(0).max(100) }).strict(),
  z
    .object({ kind: z.literal('units'), units: z.int().min(1).max(Number.MAX_SAFE_INTEGER) })
    .strict(),
]);

const accountSchema = z
  .object({
    id: idSchema,
    version: versionSchema,
    currency: z.string().regex(CURRENCY_RE, 'must be an ISO 4217 code in upper case'),
    timeZone: z
      .string()
      .max(64)
      .refine((zone) => isValidZone(zone), 'must be an IANA time zone')
      .default('UTC'),
    locale: z.string().regex(LOCALE_RE, 'must be a BCP 47 tag').default('en'),
    email: z.email().max(254).nullable().default(null),
    phone: z
      .string()
      .regex(PHONE_RE, 'must be E.164, e.g. +8613800000000')
      .nullable()
      .default(null),
    notifyEmail: z.boolean().default(true),
    notifySms: z.boolean().default(true),
    smsOptedOut: z.boolean().default(false),
    emailBounced: z.boolean().default(false),
    lowBalanceThresholdMinor: minorSchema.nullable().default(null),
    protection: z
      .object({
        amountMinor: minorSchema.nullable().default(null),
        durationSeconds: z.int().min(1).max(2_147_483_647).nullable().default(null),
      })
      .strict()
      .nullable()
      .default(null)
      .describe('The account’s own protection quota (R4); null: the rule default'),
    planAlertThresholds: z.array(thresholdSchema).max(10).nullable().default(null),
    openingBalanceMinor: signedMinor
      .optional()
      .describe(
        'Available balance when the account is created; ignored afterwards (top-ups and payments move it)',
      ),
  })
  .strict();

const serviceSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    version: versionSchema,
    kind: z.enum(SERVICE_KINDS),
    planType: z.enum(PLAN_TYPES).default('payg'),
  })
  .strict();

const studioInstanceSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    version: versionSchema,
    serviceId: idSchema,
    name: z
      .string()
      .max(200)
      .refine((n) => n.trim().length > 0, 'must not be blank'),
    streaming: z.boolean().default(false),
  })
  .strict();

const sdkLicenseSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    version: versionSchema,
    kind: z.enum(SDK_LICENSE_KINDS),
    activatedAt: nullableInstant.default(null),
  })
  .strict();

const promotionRulesSchema = z
  .object({ refundable: z.boolean().optional(), maxRefundMinor: minorSchema.optional() })
  .strict();
const giftsSchema = z
  .array(z.object({ id: idSchema, kind: codeSchema }).strict())
  .max(50)
  .default([]);

const orderSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    version: versionSchema,
    productType: z.enum(ORDER_PRODUCT_TYPES),
    cashPaidMinor: minorSchema.default(0),
    voucherPaidMinor: minorSchema.default(0),
    couponPaidMinor: minorSchema.default(0),
    promotionId: idSchema.nullable().default(null),
    promotionRules: promotionRulesSchema.nullable().default(null),
    gifts: giftsSchema,
    resourcePlanId: idSchema.nullable().default(null),
    sdkLicenseId: idSchema.nullable().default(null),
    createdAt: instant.optional().describe('When the order was placed; default: when first stored'),
    refundedAt: nullableInstant.default(null),
  })
  .strict();

const planSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    version: versionSchema,
    kind: codeSchema,
    totalUnits: minorSchema,
    usedUnits: minorSchema.default(0),
    startsAt: instant,
    expiresAt: instant,
    purchasedAt: instant.optional(),
    alertThresholds: z.array(thresholdSchema).max(10).optional(),
    sdkLicenseId: idSchema.optional(),
    order: z
      .object({
        id: idSchema,
        cashPaidMinor: minorSchema.default(0),
        voucherPaidMinor: minorSchema.default(0),
        couponPaidMinor: minorSchema.default(0),
        promotionId: idSchema.optional(),
        promotionRules: promotionRulesSchema.optional(),
        gifts: giftsSchema,
      })
      .strict()
      .optional()
      .describe('The purchase, recorded with the plan when it is created'),
  })
  .strict()
  .refine((p) => p.usedUnits <= p.totalUnits, {
    path: ['usedUnits'],
    message: 'must not exceed totalUnits',
  })
  .refine((p) => p.expiresAt > p.startsAt, {
    path: ['expiresAt'],
    message: 'must be after startsAt',
  });

const usageSchema = z
  .object({
    accountId: idSchema,
    sourceId: idSchema.describe('The writer’s own id, unique per account'),
    version: versionSchema.default(0),
    product: codeSchema,
    metric: codeSchema,
    quantity: minorSchema,
    recordedAt: instant,
  })
  .strict();

const batch = <S extends z.ZodType>(key: string, item: S) =>
  z.object({ [key]: z.array(item).min(1).max(MAX_BATCH) }).strict();

type Out<S extends z.ZodType> = z.output<S>;

// ---------------------------------------------------------------------------------------------
// Row kinds: how each plain record maps to its table's columns.

const ACCOUNT_KIND: RowKind = {
  noun: 'account',
  table: 'accounts',
  key: ACCOUNT_KEY,
  createsAccount: true,
  columns: [
    ['id', 'text'],
    ['currency', 'text'],
    ['time_zone', 'text'],
    ['locale', 'text'],
    ['email', 'text'],
    ['phone', 'text'],
    ['notify_email', 'boolean'],
    ['notify_sms', 'boolean'],
    ['sms_opted_out', 'boolean'],
    ['email_bounced', 'boolean'],
    ['low_balance_threshold_minor', 'bigint'],
    ['protection_custom', 'boolean'],
    ['protection_amount_minor', 'bigint'],
    ['protection_duration_seconds', 'integer'],
    ['plan_alert_thresholds', 'jsonb'],
    ['available_balance_minor', 'bigint'],
  ],
  insertOnly: ['available_balance_minor'],
  // Enforcement columns are the daemon's: a contact or quota change never resets them.
  onUpdate: 'version = accounts.version + 1',
};

const SERVICE_KIND: RowKind = {
  noun: 'service',
  table: 'services',
  columns: [...OWNED_COLUMNS, ['kind', 'text'], ['plan_type', 'text']],
};

const STUDIO_INSTANCE_KIND: RowKind = {
  noun: 'studio instance',
  table: 'studio_instances',
  columns: [...OWNED_COLUMNS, ['service_id', 'text'], ['name', 'text'], ['streaming', 'boolean']],
};

const SDK_LICENSE_KIND: RowKind = {
  evaluates: false,
  noun: 'SDK license',
  table: 'sdk_licenses',
  columns: [...OWNED_COLUMNS, ['kind', 'text'], ['activated_at', 'timestamptz']],
};

const ORDER_KIND: RowKind = {
  evaluates: false,
  noun: 'order',
  table: 'orders',
  noUpdatedAt: true,
  insertOnly: ['created_at'],
  columns: [
    ...OWNED_COLUMNS,
    ['product_type', 'text'],
    ['cash_paid_minor', 'bigint'],
    ['voucher_paid_minor', 'bigint'],
    ['coupon_paid_minor', 'bigint'],
    ['promotion_id', 'text'],
    ['promotion_rules', 'jsonb'],
    ['gifts', 'jsonb'],
    ['resource_plan_id', 'text'],
    ['sdk_license_id', 'text'],
    ['created_at', 'timestamptz'],
    ['refunded_at', 'timestamptz'],
  ],
};

const USAGE_KIND: RowKind = {
  evaluates: false,
  noun: 'usage record',
  table: 'usage_records',
  key: USAGE_KEY,
  noUpdatedAt: true,
  columns: [
    ['account_id', 'text'],
    ['source_id', 'text'],
    ['product', 'text'],
    ['metric', 'text'],
    ['quantity', 'bigint'],
    ['recorded_at', 'timestamptz'],
  ],
};

function versioned<T extends { id: string; accountId: string; version: number }>(body: T) {
  return {
    id: body.id,
    accountId: body.accountId,
    version: body.version,
    hash: bodyHash(body),
  };
}

function rowItem<T extends { id: string; accountId: string; version: number }>(
  body: T,
  row: Record<string, unknown>,
): RowItem {
  return { ...versioned(body), row };
}

// ---------------------------------------------------------------------------------------------
// Shared plumbing of the ingest routes.

const VERSION_RULES =
  'Each item carries the source’s `version`: applied when newer than the stored one, a duplicate when equal with the same body, 409 (naming the id and the stored version) when equal or older with another body or sent for another account. The batch is one transaction: any 409 or 422 stores nothing and lists every offending item.';

const batchResponses = (extra: Record<number, string> = {}) => ({
  200: 'Every item was a duplicate: nothing stored',
  202: 'Stored (each item: created, updated or duplicate); the accounts are evaluated',
  409: 'An id stored at an equal or newer version with another body, or of another account',
  422: 'Unknown account (or reference)',
  ...extra,
});

/** One batch endpoint: its body is `{ [key]: item[] }`, each item mapped and written together. */
interface BatchRoute<S extends z.ZodType, I> {
  readonly url: string;
  readonly summary: string;
  readonly description: string;
  /** The body's array field, also the answer's. */
  readonly key: string;
  readonly item: S;
  /** Extra or replaced response descriptions. */
  readonly responses?: Record<number, string>;
  readonly toItem: (item: Out<S>) => I;
  readonly write: (db: Db, items: I[], options: IngestOptions) => Promise<BatchResult>;
}

/** Registers a batch endpoint: answers 202 (200 when all were duplicates), queues the evaluations. */
function batchRoute<S extends z.ZodType, I>(api: Api, daemon: Daemon, def: BatchRoute<S, I>) {
  const { db, config } = daemon.ctx;
  api.route({
    method: 'POST',
    url: def.url,
    tag: 'ingest',
    summary: def.summary,
    description: def.description,
    body: batch(def.key, def.item),
    responses: batchResponses(def.responses),
    handler: async ({ body, principal }, reply) => {
      const items = (body[def.key] as Out<S>[]).map(def.toItem);
      const options = {
        statementTimeoutMs: config.ingestStatementTimeoutMs,
        now: daemon.ctx.clock.now(),
        actor: actorName(principal),
      };
      let result: BatchResult;
      try {
        result = await def.write(db, items, options);
      } catch (error) {
        throw asHttpError(error, def.key);
      }
      const evaluationQueued = await daemon.evaluateAccounts(result.changedAccounts, 'ingest');
      const stored = result.results.filter((r) => r.result !== 'duplicate').length;
      return reply.code(stored > 0 ? 202 : 200).send({
        stored,
        duplicates: result.results.length - stored,
        evaluationQueued,
        [def.key]: result.results,
      });
    },
  });
}

/** A batch endpoint whose items are plain rows of one table (src/adapters/db/ingest-store.ts). */
function rowRoute<S extends z.ZodType>(
  api: Api,
  daemon: Daemon,
  kind: RowKind,
  def: Omit<BatchRoute<S, RowItem>, 'write'>,
) {
  batchRoute(api, daemon, { ...def, write: (db, items, o) => ingestRows(db, kind, items, o) });
}

// ---------------------------------------------------------------------------------------------
// One function per ingest kind.

function registerBills(api: Api, daemon: Daemon): void {
  batchRoute(api, daemon, {
    url: '/v1/ingest/bills',
    summary: 'Create or revise bills (versioned)',
    description: `${VERSION_RULES} A bill's paid amount is never taken from this body: it comes from payments. Lowering the amount below what was paid, or voiding the bill, credits the difference to the available balance.`,
    key: 'bills',
    item: billSchema,
    toItem: (b) => ({
      ...versioned(b),
      product: b.product,
      amountMinor: b.amountMinor,
      issuedAt: new Date(b.issuedAt),
      dueAt: new Date(b.dueAt),
      void: b.status === 'void',
    }),
    write: ingestBills,
  });
}

function registerPayments(api: Api, daemon: Daemon): void {
  batchRoute(api, daemon, {
    url: '/v1/ingest/payments',
    summary: 'Record payments (versioned; the only source of paid amounts)',
    description: `${VERSION_RULES} With billId the payment pays that bill up to what it owes and credits the rest to the balance; without, it pays the unpaid bills earliest due first (all products), then the balance. A void bill refuses payments (422). A newer version of a payment undoes its allocation and allocates it again. Each result lists the allocations.`,
    key: 'payments',
    item: paymentSchema,
    responses: { 422: 'Unknown account, unknown or void bill' },
    toItem: (p) => ({ ...versioned(p), amountMinor: p.amountMinor, billId: p.billId ?? null }),
    write: ingestPayments,
  });
}

function registerPaymentReversals(api: Api, daemon: Daemon): void {
  batchRoute(api, daemon, {
    url: '/v1/ingest/payment-reversals',
    summary: 'Reverse payments (chargebacks, bounced transfers)',
    description: `${VERSION_RULES} A reversal undoes exactly its payment's allocation: the bills it paid owe that again, and what it credited is taken from the balance. Nothing else lowers a paid amount. A payment is reversed at most once.`,
    key: 'reversals',
    item: reversalSchema,
    responses: { 422: 'Unknown account or payment, or a payment already reversed' },
    toItem: (r) => ({ ...versioned(r), paymentId: r.paymentId, reason: r.reason ?? null }),
    write: ingestPaymentReversals,
  });
}

function registerTopups(api: Api, daemon: Daemon): void {
  batchRoute(api, daemon, {
    url: '/v1/ingest/topups',
    summary: 'Credit the available balance (versioned)',
    description: `${VERSION_RULES} A newer version of a top-up with another amount moves the balance by the difference.`,
    key: 'topups',
    item: topupSchema,
    toItem: (t) => ({ ...versioned(t), amountMinor: t.amountMinor }),
    write: ingestTopups,
  });
}

function registerAccounts(api: Api, daemon: Daemon): void {
  batchRoute(api, daemon, {
    url: '/v1/ingest/accounts',
    summary: 'Create or update accounts (versioned)',
    description: `${VERSION_RULES} Sets the account's currency (fixed once created), zone, locale, contacts, channel preferences, low-balance threshold, protection quota and plan alert thresholds. The enforcement state is the daemon's: a change here never resets it. The balance is set only when the account is created (openingBalanceMinor); top-ups and payments move it.`,
    key: 'accounts',
    item: accountSchema,
    responses: { 422: 'A change the account cannot take (currency)' },
    // The hash covers the body as sent; `accountId` is the id itself.
    toItem: (a) =>
      rowItem(
        { ...a, accountId: a.id },
        {
          currency: a.currency,
          time_zone: a.timeZone,
          locale: a.locale,
          email: a.email,
          phone: a.phone,
          notify_email: a.notifyEmail,
          notify_sms: a.notifySms,
          sms_opted_out: a.smsOptedOut,
          email_bounced: a.emailBounced,
          low_balance_threshold_minor: a.lowBalanceThresholdMinor,
          protection_custom: a.protection !== null,
          protection_amount_minor: a.protection?.amountMinor ?? null,
          protection_duration_seconds: a.protection?.durationSeconds ?? null,
          plan_alert_thresholds: a.planAlertThresholds,
          available_balance_minor: a.openingBalanceMinor ?? 0,
        },
      ),
    write: (db, items, o) =>
      ingestRows(db, ACCOUNT_KIND, items, o, (item, stored) =>
        stored !== undefined && String(stored.currency).trim() !== item.row.currency
          ? `the currency of account ${item.id} is ${String(stored.currency).trim()} and cannot change`
          : null,
      ),
  });
}

function registerServices(api: Api, daemon: Daemon): void {
  rowRoute(api, daemon, SERVICE_KIND, {
    url: '/v1/ingest/services',
    summary: 'Create or update services (versioned)',
    description: `${VERSION_RULES} Sets a service's kind and plan type; its status and holds are the daemon's.`,
    key: 'services',
    item: serviceSchema,
    toItem: (s) => rowItem(s, { kind: s.kind, plan_type: s.planType }),
  });
}

function registerStudioInstances(api: Api, daemon: Daemon): void {
  rowRoute(api, daemon, STUDIO_INSTANCE_KIND, {
    url: '/v1/ingest/studio-instances',
    summary: 'Create or update production-studio instances (versioned)',
    description: `${VERSION_RULES} Sets an instance's service (a studio service of the same account), name and whether it is streaming; its release columns are the daemon's.`,
    key: 'instances',
    item: studioInstanceSchema,
    responses: { 409: 'Version conflict, or a service of another account' },
    toItem: (i) => rowItem(i, { service_id: i.serviceId, name: i.name, streaming: i.streaming }),
  });
}

function registerSdkLicenses(api: Api, daemon: Daemon): void {
  rowRoute(api, daemon, SDK_LICENSE_KIND, {
    url: '/v1/ingest/sdk-licenses',
    summary: 'Create or update SDK licenses (versioned)',
    description: VERSION_RULES,
    key: 'licenses',
    item: sdkLicenseSchema,
    toItem: (l) => rowItem(l, { kind: l.kind, activated_at: l.activatedAt }),
  });
}

function registerOrders(api: Api, daemon: Daemon): void {
  rowRoute(api, daemon, ORDER_KIND, {
    url: '/v1/ingest/orders',
    summary: 'Create or update orders (versioned)',
    description: VERSION_RULES,
    key: 'orders',
    item: orderSchema,
    responses: { 409: 'Version conflict, or a plan or license of another account' },
    toItem: (o) =>
      rowItem(o, {
        product_type: o.productType,
        cash_paid_minor: o.cashPaidMinor,
        voucher_paid_minor: o.voucherPaidMinor,
        coupon_paid_minor: o.couponPaidMinor,
        promotion_id: o.promotionId,
        promotion_rules: o.promotionRules,
        gifts: o.gifts,
        resource_plan_id: o.resourcePlanId,
        sdk_license_id: o.sdkLicenseId,
        created_at: o.createdAt ?? new Date().toISOString(),
        refunded_at: o.refundedAt,
      }),
  });
}

function registerUsage(api: Api, daemon: Daemon): void {
  rowRoute(api, daemon, USAGE_KIND, {
    url: '/v1/ingest/usage',
    summary: 'Record raw usage (reference only; versioned by account and source id)',
    description: `${VERSION_RULES} A usage record is identified by its sourceId within the account.`,
    key: 'records',
    item: usageSchema,
    toItem: (u) =>
      rowItem(
        { ...u, id: `${u.accountId}/${u.sourceId}` },
        {
          source_id: u.sourceId,
          product: u.product,
          metric: u.metric,
          quantity: u.quantity,
          recorded_at: u.recordedAt,
        },
      ),
  });
}

type Plan = Out<typeof planSchema>;

/** A newer version of a stored plan: quota, validity and thresholds change; its order may not. */
async function updateStoredPlan(
  tx: Tx,
  p: Plan,
  hash: string,
  storedOrder: string | null,
): Promise<void> {
  if (p.order !== undefined && p.order.id !== storedOrder) {
    throw new IngestRejected(409, 'version-conflict', [
      {
        index: 0,
        id: p.id,
        field: 'order.id',
        message: `plan ${p.id} was bought with order ${storedOrder ?? '(none)'}; change orders through /v1/ingest/orders`,
      },
    ]);
  }
  const alertThresholds = p.alertThresholds ?? null;
  await tx.execute(sql`
    update resource_plans set kind = ${p.kind}, total_units = ${p.totalUnits},
           used_units = ${p.usedUnits}, starts_at = ${p.startsAt}::timestamptz,
           expires_at = ${p.expiresAt}::timestamptz,
           purchased_at = coalesce(${p.purchasedAt ?? null}::timestamptz, purchased_at),
           alert_thresholds = ${alertThresholds === null ? null : JSON.stringify(alertThresholds)}::jsonb,
           sdk_license_id = ${p.sdkLicenseId ?? null},
           source_version = ${p.version}, source_hash = ${hash}, updated_at = now()
     where id = ${p.id}`);
}

/** A new plan is a purchase: refused while the account has overdue bills (R8). */
async function purchasePlan(
  tx: Tx,
  p: Plan,
  hash: string,
  now: Date,
  actor: string,
): Promise<void> {
  const [account] = await queryRows<{ currency: string }>(
    tx,
    sql`select currency from accounts where id = ${p.accountId}`,
  );
  const verdict = purchaseGuard(
    await unpaidBills(tx, p.accountId),
    (account?.currency ?? '').trim(),
    now,
  );
  if (!verdict.allowed) {
    throw new HttpError(409, 'purchase-refused', verdict.message, {
      reason: verdict.reason,
      amountToPayMinor: verdict.amountToPayMinor,
      currency: verdict.currency,
      overdueBillIds: verdict.overdueBillIds,
    });
  }
  if (p.order !== undefined) {
    const inserted = await tx
      .insert(orders)
      .values({
        id: p.order.id,
        accountId: p.accountId,
        productType: 'resource-plan',
        cashPaidMinor: p.order.cashPaidMinor,
        voucherPaidMinor: p.order.voucherPaidMinor,
        couponPaidMinor: p.order.couponPaidMinor,
        promotionId: p.order.promotionId ?? null,
        promotionRules: p.order.promotionRules ?? null,
        gifts: p.order.gifts,
        sourceVersion: p.version,
      })
      .onConflictDoNothing()
      .returning({ id: orders.id });
    if (inserted.length === 0) {
      throw new HttpError(409, 'conflict', `order ${p.order.id} already exists`);
    }
  }
  await tx.insert(resourcePlans).values({
    id: p.id,
    accountId: p.accountId,
    kind: p.kind,
    totalUnits: p.totalUnits,
    usedUnits: p.usedUnits,
    startsAt: new Date(p.startsAt),
    expiresAt: new Date(p.expiresAt),
    alertThresholds: p.alertThresholds ?? null,
    sdkLicenseId: p.sdkLicenseId ?? null,
    sourceVersion: p.version,
    sourceHash: hash,
    purchasedAt: p.purchasedAt !== undefined ? new Date(p.purchasedAt) : now,
    orderId: p.order?.id ?? null,
  });
  if (p.order !== undefined) {
    await tx.execute(sql`update orders set resource_plan_id = ${p.id} where id = ${p.order.id}`);
  }
  await appendEvent(tx, {
    accountId: p.accountId,
    kind: 'plan-purchased',
    actor,
    detail: { planId: p.id, kind: p.kind, orderId: p.order?.id ?? null },
    idempotencyKey: `plan-purchased-v1-${p.id}`,
  });
}

function registerPlans(api: Api, daemon: Daemon): void {
  const { db, config } = daemon.ctx;
  api.route({
    method: 'POST',
    url: '/v1/ingest/plans',
    tag: 'ingest',
    summary: 'Record a resource plan purchase (R8 guard; versioned)',
    description:
      'A new plan is refused with 409 `purchase-refused` while the account has any overdue bill (R8), with the reason and the amount to pay. A newer version of a stored plan updates its quota, validity and thresholds without the guard (it is no purchase); its order is changed through /v1/ingest/orders. The same version and body again answers 200 created: false, duplicate: true.',
    body: planSchema,
    status: 201,
    responses: {
      200: 'Updated, or a duplicate (created: false)',
      201: 'Created',
      409: 'R8: overdue bills (purchase-refused), a version conflict or an id of another account',
      422: 'Unknown account',
    },
    handler: async ({ body: p, principal }, reply) => {
      const actor = actorName(principal);
      const now = daemon.ctx.clock.now();
      const item = versioned(p);
      const result = await db
        .transaction(async (tx) => {
          const { stored, writes } = await openBatch(
            tx,
            { statementTimeoutMs: config.ingestStatementTimeoutMs, now, actor },
            [item],
            { paidAdjustment: '', table: 'resource_plans', columns: 'order_id', noun: 'plan' },
          );
          const write = writes.get(p.id);
          if (write === undefined) return { created: false, duplicate: true };
          if (!write.created) {
            const storedOrder = (stored.get(p.id)?.order_id as string | null | undefined) ?? null;
            await updateStoredPlan(tx, p, item.hash, storedOrder);
            return { created: false, duplicate: false };
          }
          await purchasePlan(tx, p, item.hash, now, actor);
          return { created: true, duplicate: false };
        })
        .catch((error: unknown) => {
          throw asHttpError(error, 'plans');
        });
      const evaluationQueued = result.duplicate
        ? true
        : await daemon.evaluateAccounts([p.accountId], 'ingest');
      const answer = { planId: p.id, orderId: p.order?.id ?? null, ...result, evaluationQueued };
      return result.created ? answer : reply.code(200).send(answer);
    },
  });
}

/** The ingest endpoints, in the order the OpenAPI document lists them. */
export function registerIngestRoutes(api: Api, daemon: Daemon): void {
  registerBills(api, daemon);
  registerPayments(api, daemon);
  registerPaymentReversals(api, daemon);
  registerTopups(api, daemon);
  registerAccounts(api, daemon);
  registerServices(api, daemon);
  registerStudioInstances(api, daemon);
  registerSdkLicenses(api, daemon);
  registerOrders(api, daemon);
  registerUsage(api, daemon);
  registerPlans(api, daemon);
}

/** The store's refusal as the API's error, with each item's path in the request body. */
function asHttpError(error: unknown, key: string): unknown {
  if (!(error instanceof IngestRejected)) return error;
  return new HttpError(error.status, error.code, error.message, {
    issues: error.issues.map((i) => ({
      path: key === 'plans' ? `body.${i.field}` : `body.${key}.${i.index}.${i.field}`,
      id: i.id,
      message: i.message,
      ...(i.storedVersion === undefined ? {} : { storedVersion: i.storedVersion }),
    })),
  });
}
