import {
  and,
  asc,
  desc,
  eq,
  gte,
  inArray,
  isNotNull,
  isNull,
  lt,
  sql,
  type SQL,
} from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import { z } from 'zod';
import { columnsOf, queryRows, type Db, type Tx } from '../adapters/db/client';
import {
  accounts,
  bills,
  enforcementEvents,
  notifications,
  orders,
  resourcePlans,
  sdkLicenses,
  services,
  studioInstances,
  usageRecords,
} from '../adapters/db/schema';
import type { BillSnapshot } from '../domain/snapshot';
import type { RefundOrder } from '../domain/refund';
import { HttpError, notFound } from './api';

/**
 * Reads behind the API's inquiry routes (R8, R11, R12, the enforcement timeline). Row shapes the
 * billing system wrote are checked where the domain needs them; a row that breaks the contract
 * answers 422 naming the column instead of a 500.
 */

export type AccountRow = typeof accounts.$inferSelect;

export async function loadAccount(db: Db | Tx, id: string): Promise<AccountRow> {
  const [row] = await db.select().from(accounts).where(eq(accounts.id, id)).limit(1);
  if (row === undefined) throw notFound('account', id);
  return row;
}

/** Unpaid bills of an account, as the domain sees them (R2/R8). */
export async function unpaidBills(db: Db | Tx, accountId: string): Promise<BillSnapshot[]> {
  const rows = await db
    .select(columnsOf(bills, 'id', 'product', 'amountMinor', 'paidMinor', 'dueAt'))
    .from(bills)
    .where(and(eq(bills.accountId, accountId), eq(bills.status, 'unpaid')))
    .orderBy(asc(bills.dueAt), asc(bills.id));
  return rows;
}

// ---------------------------------------------------------------------------------------------
// R11: an order as the refund calculator sees it.

const promotionRulesSchema = z
  .object({
    refundable: z.boolean().optional(),
    maxRefundMinor: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .loose();
const giftsSchema = z.array(z.object({ id: z.string().min(1), kind: z.string().min(1) }).loose());

export interface LoadedOrder {
  readonly order: RefundOrder;
  readonly account: AccountRow;
  /** When the order was placed: no refund of it is requested before. */
  readonly createdAt: Date;
}

export async function loadRefundOrder(db: Db, orderId: string): Promise<LoadedOrder> {
  const [row] = await db.select().from(orders).where(eq(orders.id, orderId)).limit(1);
  if (row === undefined) throw notFound('order', orderId);
  const account = await loadAccount(db, row.accountId);

  let plan: RefundOrder['plan'] = null;
  if (row.resourcePlanId !== null) {
    const [p] = await db
      .select({
        totalUnits: resourcePlans.totalUnits,
        usedUnits: resourcePlans.usedUnits,
        activatedAt: sdkLicenses.activatedAt,
      })
      .from(resourcePlans)
      .leftJoin(sdkLicenses, eq(sdkLicenses.id, resourcePlans.sdkLicenseId))
      .where(eq(resourcePlans.id, row.resourcePlanId))
      .limit(1);
    if (p !== undefined) {
      plan = {
        totalUnits: p.totalUnits,
        usedUnits: p.usedUnits,
        linkedLicenseActivated: p.activatedAt !== null,
      };
    }
  }
  let licenseActivated = false;
  if (row.sdkLicenseId !== null) {
    const [l] = await db
      .select({ activatedAt: sdkLicenses.activatedAt })
      .from(sdkLicenses)
      .where(eq(sdkLicenses.id, row.sdkLicenseId))
      .limit(1);
    licenseActivated = l?.activatedAt != null;
  }
  const rules = promotionRulesSchema.safeParse(row.promotionRules ?? {});
  if (!rules.success) {
    throw new HttpError(422, 'bad-row', `order ${orderId}: promotion_rules breaks the contract`, {
      column: 'promotion_rules',
    });
  }
  const gifts = giftsSchema.safeParse(row.gifts);
  if (!gifts.success) {
    throw new HttpError(422, 'bad-row', `order ${orderId}: gifts breaks the contract`, {
      column: 'gifts',
    });
  }
  const hasPromotion = row.promotionId !== null || row.promotionRules !== null;
  return {
    account,
    createdAt: row.createdAt,
    order: {
      id: row.id,
      kind: row.productType,
      currency: account.currency,
      cashPaidMinor: row.cashPaidMinor,
      voucherPaidMinor: row.voucherPaidMinor,
      couponPaidMinor: row.couponPaidMinor,
      plan,
      licenseActivated,
      promotion: hasPromotion
        ? {
            id: row.promotionId ?? '',
            ...(rules.data.refundable !== undefined ? { refundable: rules.data.refundable } : {}),
            ...(rules.data.maxRefundMinor !== undefined
              ? { maxRefundMinor: rules.data.maxRefundMinor }
              : {}),
          }
        : null,
      gifts: gifts.data.map((g) => ({ id: g.id, kind: g.kind })),
      refundedAt: row.refundedAt,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// R12 inquiries.

export interface Period {
  readonly from?: string | undefined;
  readonly to?: string | undefined;
}

function within(column: AnyPgColumn, p: Period): SQL[] {
  const out: SQL[] = [];
  if (p.from !== undefined) out.push(gte(column, new Date(p.from)));
  if (p.to !== undefined) out.push(lt(column, new Date(p.to)));
  return out;
}

/** Rows were read with `limit + 1`: the first `limit`, and whether there were more. */
function firstPage<T>(rows: T[], limit: number): { page: T[]; truncated: boolean } {
  return { page: rows.slice(0, limit), truncated: rows.length > limit };
}

export async function billDetails(
  db: Db,
  account: AccountRow,
  q: Period & { product?: string | undefined; granularity: 'day' | 'month'; limit: number },
): Promise<{ bills: unknown[]; truncated: boolean; totals: unknown[] }> {
  const where = and(
    eq(bills.accountId, account.id),
    ...within(bills.issuedAt, q),
    ...(q.product !== undefined ? [eq(bills.product, q.product)] : []),
  );
  const rows = await db
    .select(
      columnsOf(bills, 'id', 'product', 'amountMinor', 'paidMinor', 'status', 'issuedAt', 'dueAt'),
    )
    .from(bills)
    .where(where)
    .orderBy(desc(bills.issuedAt), asc(bills.id))
    .limit(q.limit + 1);
  // Periods are local calendar days or months in the account's zone (validated by the caller).
  const unit = sql.raw(q.granularity === 'day' ? `'day'` : `'month'`);
  const totals = await queryRows<{
    period: string;
    product: string;
    bills: string | number;
    amount: string | number;
    paid: string | number;
    unpaid: string | number;
  }>(
    db,
    sql`select to_char(date_trunc(${unit}, ${bills.issuedAt} at time zone ${account.timeZone}), 'YYYY-MM-DD') as period,
               ${bills.product} as product, count(*) as bills,
               coalesce(sum(${bills.amountMinor}), 0) as amount,
               coalesce(sum(least(${bills.paidMinor}, ${bills.amountMinor})), 0) as paid,
               coalesce(sum(case when ${bills.status} = 'unpaid'
                                 then greatest(${bills.amountMinor} - ${bills.paidMinor}, 0)
                                 else 0 end), 0) as unpaid
          from ${bills} where ${where}
         group by 1, 2 order by 1, 2`,
  );
  const { page, truncated } = firstPage(rows, q.limit);
  return {
    bills: page,
    truncated,
    totals: totals.map((t) => ({
      period: t.period,
      product: t.product,
      bills: Number(t.bills),
      amountMinor: Number(t.amount),
      paidMinor: Number(t.paid),
      unpaidMinor: Number(t.unpaid),
    })),
  };
}

export async function usageDetails(
  db: Db,
  accountId: string,
  q: Period & { product?: string | undefined; metric?: string | undefined; limit: number },
): Promise<{ records: unknown[]; truncated: boolean; totals: unknown[] }> {
  const where = and(
    eq(usageRecords.accountId, accountId),
    ...within(usageRecords.recordedAt, q),
    ...(q.product !== undefined ? [eq(usageRecords.product, q.product)] : []),
    ...(q.metric !== undefined ? [eq(usageRecords.metric, q.metric)] : []),
  );
  const rows = await db
    .select(columnsOf(usageRecords, 'sourceId', 'product', 'metric', 'quantity', 'recordedAt'))
    .from(usageRecords)
    .where(where)
    .orderBy(desc(usageRecords.recordedAt), desc(usageRecords.id))
    .limit(q.limit + 1);
  const totals = await db
    .select({
      product: usageRecords.product,
      metric: usageRecords.metric,
      // count(*) and the bigint sum arrive as text
      records: sql`count(*)`.mapWith(Number),
      quantity: sql`coalesce(sum(${usageRecords.quantity}), 0)`.mapWith(Number),
    })
    .from(usageRecords)
    .where(where)
    .groupBy(usageRecords.product, usageRecords.metric)
    .orderBy(usageRecords.product, usageRecords.metric);
  const { page, truncated } = firstPage(rows, q.limit);
  return { records: page, truncated, totals };
}

export async function orderList(
  db: Db,
  accountId: string,
  q: Period & { limit: number },
): Promise<{ orders: unknown[]; truncated: boolean }> {
  const rows = await db
    .select(
      columnsOf(
        orders,
        'id',
        'productType',
        'cashPaidMinor',
        'voucherPaidMinor',
        'couponPaidMinor',
        'promotionId',
        'resourcePlanId',
        'sdkLicenseId',
        'createdAt',
        'refundedAt',
      ),
    )
    .from(orders)
    .where(and(eq(orders.accountId, accountId), ...within(orders.createdAt, q)))
    .orderBy(desc(orders.createdAt), asc(orders.id))
    .limit(q.limit + 1);
  const { page, truncated } = firstPage(rows, q.limit);
  return { orders: page, truncated };
}

// Timeline columns: a message's recipient is personal data and never shown.
const EVENT_COLUMNS = {
  ...columnsOf(enforcementEvents, 'id', 'kind', 'episodeSeq', 'actor', 'detail'),
  at: enforcementEvents.createdAt,
};
const MESSAGE_COLUMNS = columnsOf(
  notifications,
  'dedupeKey',
  'channel',
  'template',
  'status',
  'attempts',
  'lastError',
  'notBefore',
  'sentAt',
  'deliveredAt',
  'createdAt',
);
const SERVICE_COLUMNS = columnsOf(
  services,
  'id',
  'kind',
  'planType',
  'status',
  'overdueHold',
  'operatorHold',
  'suspendedAt',
  'resumedAt',
  'releasedAt',
);
const RELEASE_COLUMNS = {
  instanceId: studioInstances.id,
  ...columnsOf(studioInstances, 'serviceId', 'name', 'streaming', 'releaseDueAt'),
  episodeSeq: studioInstances.releaseEpisodeSeq,
};

/** Events, messages (without the recipient: personal data), services and pending releases. */
export async function timeline(db: Db, account: AccountRow, limit: number): Promise<unknown> {
  const [events, messages, svc, releases] = await Promise.all([
    db
      .select(EVENT_COLUMNS)
      .from(enforcementEvents)
      .where(eq(enforcementEvents.accountId, account.id))
      .orderBy(desc(enforcementEvents.createdAt), desc(enforcementEvents.id))
      .limit(limit),
    db
      .select(MESSAGE_COLUMNS)
      .from(notifications)
      .where(eq(notifications.accountId, account.id))
      .orderBy(desc(notifications.createdAt), desc(notifications.id))
      .limit(limit),
    db
      .select(SERVICE_COLUMNS)
      .from(services)
      .where(eq(services.accountId, account.id))
      .orderBy(asc(services.id)),
    db
      .select(RELEASE_COLUMNS)
      .from(studioInstances)
      .where(
        and(
          eq(studioInstances.accountId, account.id),
          isNull(studioInstances.releasedAt),
          isNotNull(studioInstances.releaseDueAt),
        ),
      )
      .orderBy(asc(studioInstances.releaseDueAt)),
  ]);
  return {
    account: {
      id: account.id,
      currency: account.currency,
      timeZone: account.timeZone,
      availableBalanceMinor: account.availableBalanceMinor,
      enforcementState: account.enforcementState,
      episodeSeq: account.episodeSeq,
      episodeStartedAt: account.episodeStartedAt,
      lastEpisodeEndedAt: account.lastEpisodeEndedAt,
    },
    events,
    notifications: messages,
    services: svc,
    scheduledReleases: releases,
  };
}

/** Accounts among `ids` that do not exist. */
export async function missingAccounts(db: Db | Tx, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const found = await db
    .select({ id: accounts.id })
    .from(accounts)
    .where(inArray(accounts.id, [...new Set(ids)]));
  const have = new Set(found.map((r) => r.id));
  return [...new Set(ids)].filter((id) => !have.has(id));
}
