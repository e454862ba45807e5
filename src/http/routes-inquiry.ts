import { z } from 'zod';
import type { Db } from '../adapters/db/client';
import type { Daemon } from '../daemon';
import { overdueMinor } from '../domain/decide';
import { purchaseGuard } from '../domain/purchase-guard';
import { quoteRefund } from '../domain/refund';
import {
  accountParams,
  codeSchema,
  HttpError,
  idSchema,
  instantSchema,
  type AnyObject,
  type Api,
} from './api';
import {
  billDetails,
  loadAccount,
  loadRefundOrder,
  orderList,
  timeline,
  unpaidBills,
  usageDetails,
  type AccountRow,
} from './queries';
import { isValidZone } from '../domain/time';

/** Read-only inquiries: purchase eligibility (R8), refund quotes (R11), R12, the timeline. */

/** Refund arrival window, business days in the account's zone (R11: 2–3). */
const REFUND_BUSINESS_DAYS = { min: 2, max: 3 } as const;

const limit = (max: number, fallback: number) =>
  z.coerce.number().int().min(1).max(max).default(fallback);

const periodQuery = {
  from: instantSchema.optional().describe('Inclusive start (ISO 8601 with offset)'),
  to: instantSchema.optional().describe('Exclusive end (ISO 8601 with offset)'),
};
const orderedPeriod = <T extends { from?: string | undefined; to?: string | undefined }>(q: T) =>
  q.from === undefined || q.to === undefined || new Date(q.from) < new Date(q.to);
const periodIssue = { path: ['to'], message: 'must be after from' };

const billsQuery = z
  .object({
    ...periodQuery,
    product: codeSchema.optional(),
    granularity: z.enum(['day', 'month']).default('month'),
    limit: limit(1_000, 200),
  })
  .strict()
  .refine(orderedPeriod, periodIssue);

const usageQuery = z
  .object({
    ...periodQuery,
    product: codeSchema.optional(),
    metric: codeSchema.optional(),
    limit: limit(5_000, 500),
  })
  .strict()
  .refine(orderedPeriod, periodIssue);

const ordersQuery = z
  .object({ ...periodQuery, limit: limit(1_000, 200) })
  .strict()
  .refine(orderedPeriod, periodIssue);

const refundQuoteQuery = z
  .object({
    requestedAt: z
      .string()
      .optional()
      .describe(
        'When the refund is (or will be) requested, ISO 8601 with offset; the arrival window counts from its local day. Default: now',
      ),
  })
  .strict();

/**
 * `requestedAt` as an instant: ISO 8601 with an offset (the local day depends on it), years
 * 1970-9999, not before the order was placed. Anything else is a 422 naming the field: the
 * quote cannot be made from it.
 */
function parseRequestedAt(text: string, orderCreatedAt: Date): Date {
  const bad = (message: string) =>
    new HttpError(422, 'invalid-requested-at', `query.requestedAt: ${message}`, {
      issues: [{ path: 'query.requestedAt', message }],
    });
  const parsed = instantSchema.safeParse(text);
  if (!parsed.success) {
    throw bad(
      parsed.error.issues[0]?.code === 'custom'
        ? 'must be between 1970 and 9999'
        : 'must be an ISO 8601 instant with an offset, e.g. 2026-11-27T10:00:00Z',
    );
  }
  const at = new Date(parsed.data);
  if (at.getTime() < orderCreatedAt.getTime()) {
    throw bad(`must not be before the order was placed (${orderCreatedAt.toISOString()})`);
  }
  return at;
}

function zoneOf(account: AccountRow): string {
  if (!isValidZone(account.timeZone)) {
    throw new HttpError(422, 'bad-row', `account ${account.id} has an unknown time zone`, {
      column: 'time_zone',
    });
  }
  return account.timeZone;
}

/** A GET of one account's data under `/v1/accounts/:id/`: 404 when there is no such account. */
interface AccountRoute<Q extends AnyObject> {
  readonly url: string;
  readonly summary: string;
  readonly description?: string;
  readonly query?: Q;
  /** What the 200 answer is, for the OpenAPI document. */
  readonly ok: string;
  readonly answer: (account: AccountRow, query: z.output<Q>) => Promise<unknown>;
}

function accountRoute<Q extends AnyObject>(api: Api, db: Db, def: AccountRoute<Q>): void {
  api.route({
    method: 'GET',
    url: def.url,
    tag: 'inquiry',
    summary: def.summary,
    description: def.description,
    params: accountParams,
    query: def.query,
    responses: { 200: def.ok, 404: 'No such account' },
    handler: async ({ params, query }) => def.answer(await loadAccount(db, params.id), query),
  });
}

export function registerInquiryRoutes(api: Api, daemon: Daemon): void {
  const { db, clock, config } = daemon.ctx;

  accountRoute(api, db, {
    url: '/v1/accounts/:id/purchase-eligibility',
    summary: 'R8: may this account buy a resource plan now?',
    ok: 'allowed, or the reason and the amount to pay',
    answer: async (account) => {
      const now = clock.now();
      const bills = await unpaidBills(db, account.id);
      return {
        accountId: account.id,
        at: now.toISOString(),
        overdueMinor: overdueMinor(bills, now),
        ...purchaseGuard(bills, account.currency.trim(), now),
      };
    },
  });

  api.route({
    method: 'GET',
    url: '/v1/orders/:id/refund-quote',
    tag: 'inquiry',
    summary: 'R11: what a refund of this order would be, and when it would arrive',
    description:
      'The arrival window counts from `requestedAt`, the instant the refund is (or will be) requested; default: now.',
    params: z.object({ id: idSchema }).strict(),
    query: refundQuoteQuery,
    responses: {
      200: 'A quote (refundable) or the reason it is not refundable',
      404: 'No such order',
      422: 'The order row breaks the contract, or requestedAt is not a usable instant',
    },
    handler: async ({ params, query }) => {
      const { order, account, createdAt } = await loadRefundOrder(db, params.id);
      const now = clock.now();
      const requestedAt =
        query.requestedAt === undefined ? now : parseRequestedAt(query.requestedAt, createdAt);
      return quoteRefund(order, {
        now,
        requestedAt,
        timeZone: zoneOf(account),
        holidays: new Set(config.holidays),
        minBusinessDays: REFUND_BUSINESS_DAYS.min,
        maxBusinessDays: REFUND_BUSINESS_DAYS.max,
      });
    },
  });

  accountRoute(api, db, {
    url: '/v1/accounts/:id/bills',
    summary: 'R12: billing details by period and product',
    description:
      'Bills issued in [from, to), newest first, and sums per local period (day or month in the account’s zone) and product.',
    query: billsQuery,
    ok: 'Bills and grouped totals',
    answer: async (account, query) => {
      zoneOf(account);
      return {
        accountId: account.id,
        currency: account.currency.trim(),
        timeZone: account.timeZone,
        granularity: query.granularity,
        ...(await billDetails(db, account, query)),
      };
    },
  });

  accountRoute(api, db, {
    url: '/v1/accounts/:id/usage',
    summary: 'R12: raw usage records (reference only, not for reconciliation)',
    query: usageQuery,
    ok: 'Usage records and sums',
    answer: async (account, query) => ({
      accountId: account.id,
      referenceOnly: true,
      notice: 'Raw usage is for reference only and is not used for reconciliation.',
      ...(await usageDetails(db, account.id, query)),
    }),
  });

  accountRoute(api, db, {
    url: '/v1/accounts/:id/orders',
    summary: 'R12: orders of an account',
    query: ordersQuery,
    ok: 'Orders, newest first',
    answer: async (account, query) => ({
      accountId: account.id,
      ...(await orderList(db, account.id, query)),
    }),
  });

  accountRoute(api, db, {
    url: '/v1/accounts/:id/timeline',
    summary: 'Enforcement timeline: events, notifications, services, scheduled releases',
    query: z.object({ limit: limit(1_000, 100) }).strict(),
    ok: 'The timeline, newest first',
    answer: (account, query) => timeline(db, account, query.limit),
  });
}
