import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { queryRows, type Tx } from '../adapters/db/client';
import { appendEvent } from '../adapters/db/daemon-writers';
import { BILL_STATUSES, orders, resourcePlans, usageRecords } from '../adapters/db/schema';
import type { Daemon } from '../daemon';
import { purchaseGuard } from '../domain/purchase-guard';
import {
  codeSchema,
  HttpError,
  idSchema,
  instantSchema,
  minorSchema,
  type Api,
  type FieldIssue,
} from './api';
import { actorName } from './auth';
import { missingAccounts, unpaidBills } from './queries';

/**
 * Ingest endpoints for the billing system of record: the same facts it may write into the tables
 * directly, posted as JSON. Each is idempotent by the caller's id (bills, plans: upsert/insert by
 * id; payments, top-ups: the id is the idempotency key of the event recording it, in the same
 * transaction; usage: unique per account and source id). A batch is one transaction: all or
 * nothing. Every touched account is evaluated at once (the database NOTIFY does it too).
 */

const MAX_BATCH = 1_000;
const positiveMinor = minorSchema.min(1);

const billSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    product: codeSchema,
    amountMinor: minorSchema,
    paidMinor: minorSchema.default(0),
    issuedAt: instantSchema,
    dueAt: instantSchema,
    status: z.enum(BILL_STATUSES).default('unpaid'),
  })
  .strict()
  .refine((b) => new Date(b.dueAt) >= new Date(b.issuedAt), {
    path: ['dueAt'],
    message: 'must not be before issuedAt',
  });

const paymentSchema = z
  .object({
    id: idSchema.describe('The billing system’s payment id (idempotency key)'),
    accountId: idSchema,
    amountMinor: positiveMinor,
    billId: idSchema
      .optional()
      .describe('Bill paid; without it the amount pays unpaid bills earliest due first'),
  })
  .strict();

const topupSchema = z
  .object({ id: idSchema, accountId: idSchema, amountMinor: positiveMinor })
  .strict();

const thresholdSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('percent'), percent: z.number().gt(0).max(100) }).strict(),
  z
    .object({ kind: z.literal('units'), units: z.int().min(1).max(Number.MAX_SAFE_INTEGER) })
    .strict(),
]);

const planSchema = z
  .object({
    id: idSchema,
    accountId: idSchema,
    kind: codeSchema,
    totalUnits: minorSchema,
    usedUnits: minorSchema.default(0),
    startsAt: instantSchema,
    expiresAt: instantSchema,
    purchasedAt: instantSchema.optional(),
    alertThresholds: z.array(thresholdSchema).max(10).optional(),
    sdkLicenseId: idSchema.optional(),
    order: z
      .object({
        id: idSchema,
        cashPaidMinor: minorSchema.default(0),
        voucherPaidMinor: minorSchema.default(0),
        couponPaidMinor: minorSchema.default(0),
        promotionId: idSchema.optional(),
        promotionRules: z
          .object({ refundable: z.boolean().optional(), maxRefundMinor: minorSchema.optional() })
          .strict()
          .optional(),
        gifts: z
          .array(z.object({ id: idSchema, kind: codeSchema }).strict())
          .max(50)
          .default([]),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((p) => p.usedUnits <= p.totalUnits, {
    path: ['usedUnits'],
    message: 'must not exceed totalUnits',
  })
  .refine((p) => new Date(p.expiresAt) > new Date(p.startsAt), {
    path: ['expiresAt'],
    message: 'must be after startsAt',
  });

const usageSchema = z
  .object({
    accountId: idSchema,
    sourceId: idSchema.describe('The writer’s own id, unique per account'),
    product: codeSchema,
    metric: codeSchema,
    quantity: minorSchema,
    recordedAt: instantSchema,
  })
  .strict();

const batch = <S extends z.ZodType>(key: string, item: S) =>
  z.object({ [key]: z.array(item).min(1).max(MAX_BATCH) }).strict();

const billsBody = batch('bills', billSchema);
const paymentsBody = batch('payments', paymentSchema);
const topupsBody = batch('topups', topupSchema);
const usageBody = batch('records', usageSchema);

/** 422 naming each item whose account does not exist. */
async function requireAccounts(
  tx: Tx,
  key: string,
  items: readonly { accountId: string }[],
): Promise<void> {
  const missing = new Set(
    await missingAccounts(
      tx,
      items.map((i) => i.accountId),
    ),
  );
  if (missing.size === 0) return;
  const issues: FieldIssue[] = items.flatMap((item, i) =>
    missing.has(item.accountId)
      ? [{ path: `body.${key}.${i}.accountId`, message: 'unknown account' }]
      : [],
  );
  throw new HttpError(422, 'unknown-account', `unknown account(s): ${[...missing].join(', ')}`, {
    issues,
  });
}

export function registerIngestRoutes(api: Api, daemon: Daemon): void {
  const { db } = daemon.ctx;
  const evaluate = async (accountIds: readonly string[], actor: string) => {
    for (const id of new Set(accountIds)) await daemon.evaluateSoon(id, actor);
  };

  api.route({
    method: 'POST',
    url: '/v1/ingest/bills',
    tag: 'ingest',
    summary: 'Create or update bills (idempotent by bill id)',
    body: billsBody,
    responses: {
      200: 'Saved',
      409: 'A bill id belongs to another account',
      422: 'Unknown account',
    },
    handler: async ({ body, principal }) => {
      const items = body.bills as z.output<typeof billSchema>[];
      await db.transaction(async (tx) => {
        await requireAccounts(tx, 'bills', items);
        for (const [i, b] of items.entries()) {
          const rows = await queryRows<{ id: string }>(
            tx,
            sql`insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at, status)
                values (${b.id}, ${b.accountId}, ${b.product}, ${b.amountMinor}, ${b.paidMinor},
                        ${b.issuedAt}::timestamptz, ${b.dueAt}::timestamptz, ${b.status})
                on conflict (id) do update set
                  product = excluded.product, amount_minor = excluded.amount_minor,
                  paid_minor = excluded.paid_minor, issued_at = excluded.issued_at,
                  due_at = excluded.due_at, status = excluded.status, updated_at = now()
                where bills.account_id = excluded.account_id
                returning id`,
          );
          if (rows.length === 0) {
            throw new HttpError(409, 'conflict', `bill ${b.id} belongs to another account`, {
              issues: [{ path: `body.bills.${i}.id`, message: 'belongs to another account' }],
            });
          }
        }
      });
      await evaluate(
        items.map((b) => b.accountId),
        actorName(principal),
      );
      return { saved: items.length };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/ingest/payments',
    tag: 'ingest',
    summary: 'Record payments (idempotent by payment id)',
    description:
      'With billId the amount is added to that bill; without, it pays the unpaid bills earliest due first and the rest goes to the available balance. A bill is marked paid once fully paid. A payment id seen before is skipped (duplicate: true).',
    body: paymentsBody,
    responses: { 200: 'Recorded', 422: 'Unknown account or bill' },
    handler: async ({ body, principal }) => {
      const items = body.payments as z.output<typeof paymentSchema>[];
      const actor = actorName(principal);
      const results = await db.transaction(async (tx) => {
        await requireAccounts(tx, 'payments', items);
        const out: unknown[] = [];
        for (const [i, p] of items.entries()) {
          const allocations: { billId: string | null; amountMinor: number }[] = [];
          const eventId = await appendEvent(tx, {
            accountId: p.accountId,
            kind: 'payment-received',
            actor,
            detail: { paymentId: p.id, amountMinor: p.amountMinor, billId: p.billId ?? null },
            idempotencyKey: `payment-v1-${p.id}`,
          });
          if (eventId === null) {
            out.push({ id: p.id, duplicate: true });
            continue;
          }
          if (p.billId !== undefined) {
            const rows = await queryRows<{ id: string }>(
              tx,
              sql`update bills set paid_minor = paid_minor + ${p.amountMinor},
                         status = case when status = 'unpaid' and paid_minor + ${p.amountMinor} >= amount_minor
                                       then 'paid' else status end,
                         updated_at = now()
                   where id = ${p.billId} and account_id = ${p.accountId} returning id`,
            );
            if (rows.length === 0) {
              throw new HttpError(
                422,
                'unknown-bill',
                `bill ${p.billId} not found for the account`,
                {
                  issues: [
                    { path: `body.payments.${i}.billId`, message: 'unknown bill of this account' },
                  ],
                },
              );
            }
            allocations.push({ billId: p.billId, amountMinor: p.amountMinor });
          } else {
            let left = p.amountMinor;
            const open = await queryRows<{ id: string; owed: string | number }>(
              tx,
              sql`select id, amount_minor - paid_minor as owed from bills
                   where account_id = ${p.accountId} and status = 'unpaid' and paid_minor < amount_minor
                   order by due_at, id for update`,
            );
            for (const bill of open) {
              if (left === 0) break;
              const pay = Math.min(left, Number(bill.owed));
              await tx.execute(sql`
                update bills set paid_minor = paid_minor + ${pay},
                       status = case when paid_minor + ${pay} >= amount_minor then 'paid' else status end,
                       updated_at = now()
                 where id = ${bill.id}`);
              allocations.push({ billId: bill.id, amountMinor: pay });
              left -= pay;
            }
            if (left > 0) {
              await tx.execute(sql`
                update accounts set available_balance_minor = available_balance_minor + ${left},
                       version = version + 1, updated_at = now()
                 where id = ${p.accountId}`);
              allocations.push({ billId: null, amountMinor: left });
            }
          }
          out.push({ id: p.id, duplicate: false, allocations });
        }
        return out;
      });
      await evaluate(
        items.map((p) => p.accountId),
        actor,
      );
      return { payments: results };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/ingest/topups',
    tag: 'ingest',
    summary: 'Credit the available balance (idempotent by top-up id)',
    body: topupsBody,
    responses: { 200: 'Recorded', 422: 'Unknown account' },
    handler: async ({ body, principal }) => {
      const items = body.topups as z.output<typeof topupSchema>[];
      const actor = actorName(principal);
      const results = await db.transaction(async (tx) => {
        await requireAccounts(tx, 'topups', items);
        const out: unknown[] = [];
        for (const t of items) {
          const eventId = await appendEvent(tx, {
            accountId: t.accountId,
            kind: 'topup-received',
            actor,
            detail: { topupId: t.id, amountMinor: t.amountMinor },
            idempotencyKey: `topup-v1-${t.id}`,
          });
          if (eventId !== null) {
            await tx.execute(sql`
              update accounts set available_balance_minor = available_balance_minor + ${t.amountMinor},
                     version = version + 1, updated_at = now()
               where id = ${t.accountId}`);
          }
          out.push({ id: t.id, duplicate: eventId === null });
        }
        return out;
      });
      await evaluate(
        items.map((t) => t.accountId),
        actor,
      );
      return { topups: results };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/ingest/plans',
    tag: 'ingest',
    summary: 'Record a resource plan purchase (R8 guard; idempotent by plan id)',
    description:
      'Refused with 409 `purchase-refused` while the account has any overdue bill (R8), with the reason and the amount to pay. A plan id already recorded for the account answers created: false without checking again.',
    body: planSchema,
    status: 201,
    responses: {
      201: 'Created (or created: false when already recorded)',
      409: 'R8: overdue bills (purchase-refused), or an id of another account',
      422: 'Unknown account',
    },
    handler: async ({ body: p, principal }, reply) => {
      const actor = actorName(principal);
      const now = daemon.ctx.clock.now();
      const result = await db.transaction(async (tx) => {
        // The account row lock orders this purchase against concurrent ones.
        const [account] = await queryRows<{ currency: string }>(
          tx,
          sql`select currency from accounts where id = ${p.accountId} for update`,
        );
        if (account === undefined) {
          throw new HttpError(422, 'unknown-account', `unknown account ${p.accountId}`, {
            issues: [{ path: 'body.accountId', message: 'unknown account' }],
          });
        }
        const [existing] = await queryRows<{ account_id: string }>(
          tx,
          sql`select account_id from resource_plans where id = ${p.id}`,
        );
        if (existing !== undefined) {
          if (existing.account_id !== p.accountId) {
            throw new HttpError(409, 'conflict', `plan ${p.id} belongs to another account`);
          }
          return { created: false };
        }
        const verdict = purchaseGuard(
          await unpaidBills(tx, p.accountId),
          account.currency.trim(),
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
          purchasedAt: p.purchasedAt !== undefined ? new Date(p.purchasedAt) : now,
          alertThresholds: p.alertThresholds ?? null,
          sdkLicenseId: p.sdkLicenseId ?? null,
          orderId: p.order?.id ?? null,
        });
        if (p.order !== undefined) {
          await tx.execute(
            sql`update orders set resource_plan_id = ${p.id} where id = ${p.order.id}`,
          );
        }
        await appendEvent(tx, {
          accountId: p.accountId,
          kind: 'plan-purchased',
          actor,
          detail: { planId: p.id, kind: p.kind, orderId: p.order?.id ?? null },
          idempotencyKey: `plan-purchased-v1-${p.id}`,
        });
        return { created: true };
      });
      await evaluate([p.accountId], actor);
      const answer = { planId: p.id, orderId: p.order?.id ?? null, ...result };
      return result.created ? answer : reply.code(200).send(answer);
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/ingest/usage',
    tag: 'ingest',
    summary: 'Record raw usage (reference only; idempotent by account and source id)',
    body: usageBody,
    responses: { 200: 'Recorded', 422: 'Unknown account' },
    handler: async ({ body, principal }) => {
      const items = body.records as z.output<typeof usageSchema>[];
      const inserted = await db.transaction(async (tx) => {
        await requireAccounts(tx, 'records', items);
        const rows = await tx
          .insert(usageRecords)
          .values(
            items.map((u) => ({
              accountId: u.accountId,
              sourceId: u.sourceId,
              product: u.product,
              metric: u.metric,
              quantity: u.quantity,
              recordedAt: new Date(u.recordedAt),
            })),
          )
          .onConflictDoNothing({ target: [usageRecords.accountId, usageRecords.sourceId] })
          .returning({ id: usageRecords.id });
        return rows.length;
      });
      await evaluate(
        items.map((u) => u.accountId),
        actorName(principal),
      );
      return { inserted, duplicates: items.length - inserted };
    },
  });
}
