import { addBusinessDays } from './business-days';
import type { Minor } from './money';

/** R11: what an order's refund would be, and when it would arrive. */

export type OrderKind = 'payg' | 'resource-plan' | 'sdk-license' | 'yearly-sdk';

export interface RefundOrder {
  readonly id: string;
  readonly kind: OrderKind;
  readonly currency: string;
  /** Paid by cash or debit card: the only refundable money. */
  readonly cashPaidMinor: Minor;
  /** Paid by vouchers: never refunded. */
  readonly voucherPaidMinor: Minor;
  /** Paid by coupons: never refunded. */
  readonly couponPaidMinor: Minor;
  /** For a resource plan: its units, and whether an SDK license linked to it is activated. */
  readonly plan: {
    readonly totalUnits: number;
    readonly usedUnits: number;
    readonly linkedLicenseActivated: boolean;
  } | null;
  /** For an SDK license order: whether the license is activated. */
  readonly licenseActivated: boolean;
  /** A promotion's own refund rules override these where they conflict. */
  readonly promotion: {
    readonly id: string;
    /** Explicit refundability; undefined keeps the standard rules. */
    readonly refundable?: boolean;
    /** Upper bound on the refund, minor units. */
    readonly maxRefundMinor?: Minor;
  } | null;
  /** Gifts received with the order (coupons, extended periods): voided by a refund. */
  readonly gifts: readonly { readonly id: string; readonly kind: string }[];
  readonly refundedAt: Date | null;
}

export type RefundDenial =
  | 'payg-not-refundable'
  | 'yearly-sdk-not-unsubscribable'
  | 'license-activated'
  | 'plan-license-activated'
  | 'promotion-rules'
  | 'already-refunded';

export type RefundQuote =
  | {
      readonly refundable: true;
      readonly orderId: string;
      readonly currency: string;
      readonly refundMinor: Minor;
      /** Paid but not refunded: vouchers, coupons, and cash kept (used part of a plan, promotion cap). */
      readonly keptMinor: { readonly voucher: Minor; readonly coupon: Minor; readonly cash: Minor };
      readonly voidedGiftIds: readonly string[];
      readonly promotionApplied: boolean;
      /** When the refund is (or will be) requested: the arrival window counts from it. */
      readonly requestedAt: string;
      /**
       * Local dates (account zone) between which the refund arrives: 2–3 business days after
       * the local day of the request, not of the quote.
       */
      readonly arrival: { readonly earliest: string; readonly latest: string };
    }
  | {
      readonly refundable: false;
      readonly orderId: string;
      readonly reason: RefundDenial;
      readonly message: string;
    };

const MESSAGES: Record<RefundDenial, string> = {
  'payg-not-refundable': 'Pay-as-you-go bills follow actual usage and are not refundable.',
  'yearly-sdk-not-unsubscribable': 'A yearly SDK subscription cannot be unsubscribed.',
  'license-activated': 'An SDK license cannot be refunded once activated.',
  'plan-license-activated':
    'The resource plan is linked to an activated SDK license and counts as fully used.',
  'promotion-rules': "The promotion's rules do not allow a refund for this order.",
  'already-refunded': 'This order has already been refunded.',
};

export interface RefundContext {
  /** When the quote is asked. */
  readonly now: Date;
  /**
   * When the refund is, was or will be requested; the arrival window counts from this day, not
   * from the quote's (asked on Monday about Friday's request, the window is Tue–Wed, not Wed–Thu).
   * Default: `now`, a refund requested as it is quoted.
   */
  readonly requestedAt?: Date;
  readonly timeZone: string;
  /** Local holidays (YYYY-MM-DD) skipped with weekends when counting business days. */
  readonly holidays: ReadonlySet<string>;
  /** Arrival window in business days (policy: 2–3). */
  readonly minBusinessDays: number;
  readonly maxBusinessDays: number;
}

function deny(order: RefundOrder, reason: RefundDenial): RefundQuote {
  return { refundable: false, orderId: order.id, reason, message: MESSAGES[reason] };
}

function standardDenial(order: RefundOrder): RefundDenial | null {
  switch (order.kind) {
    case 'payg':
      return 'payg-not-refundable';
    case 'yearly-sdk':
      return 'yearly-sdk-not-unsubscribable';
    case 'sdk-license':
      return order.licenseActivated ? 'license-activated' : null;
    case 'resource-plan':
      return order.plan?.linkedLicenseActivated ? 'plan-license-activated' : null;
  }
}

/** Cash share of the unused part of a plan, rounded down; exact for any size (BigInt). */
function unusedCash(cash: Minor, plan: RefundOrder['plan']): Minor {
  if (plan === null || plan.totalUnits <= 0) return cash;
  const unused = Math.max(0, plan.totalUnits - Math.min(plan.usedUnits, plan.totalUnits));
  return Number((BigInt(cash) * BigInt(unused)) / BigInt(plan.totalUnits));
}

export function quoteRefund(order: RefundOrder, ctx: RefundContext): RefundQuote {
  if (order.refundedAt !== null) return deny(order, 'already-refunded');
  const promo = order.promotion;
  const standard = standardDenial(order);
  if (promo?.refundable === false) return deny(order, 'promotion-rules');
  if (standard !== null && promo?.refundable !== true) return deny(order, standard);

  // Vouchers and coupons are never refunded; of a plan, only the unused part of the cash is,
  // unless a promotion has explicitly made the order refundable.
  const planCash =
    order.kind === 'resource-plan' && standard === null
      ? unusedCash(order.cashPaidMinor, order.plan)
      : order.cashPaidMinor;
  const capped =
    promo?.maxRefundMinor !== undefined ? Math.min(planCash, promo.maxRefundMinor) : planCash;
  const refundMinor = Math.max(0, capped);
  const requestedAt = ctx.requestedAt ?? ctx.now;
  const earliest = addBusinessDays(requestedAt, ctx.minBusinessDays, ctx.timeZone, ctx.holidays);
  const latest = addBusinessDays(requestedAt, ctx.maxBusinessDays, ctx.timeZone, ctx.holidays);
  return {
    refundable: true,
    orderId: order.id,
    currency: order.currency,
    refundMinor,
    keptMinor: {
      voucher: order.voucherPaidMinor,
      coupon: order.couponPaidMinor,
      cash: order.cashPaidMinor - refundMinor,
    },
    voidedGiftIds: order.gifts.map((g) => g.id),
    promotionApplied:
      promo !== null && (promo.refundable !== undefined || promo.maxRefundMinor !== undefined),
    requestedAt: requestedAt.toISOString(),
    arrival: { earliest: earliest.toISODate() ?? '', latest: latest.toISODate() ?? '' },
  };
}
