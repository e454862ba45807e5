import { describe, expect, it } from 'vitest';
import { addBusinessDays } from '../../../src/domain/business-days';
import { purchaseGuard } from '../../../src/domain/purchase-guard';
import { quoteRefund, type RefundOrder, type RefundContext } from '../../../src/domain/refund';
import { T0, at, bill, plusMs } from '../../support/builders';

describe('R8 purchase guard', () => {
  it('R8: an account without overdue bills may buy a plan', () => {
    expect(purchaseGuard([bill({ dueAt: plusMs(T0, 1) })], 'USD', T0)).toEqual({ allowed: true });
  });

  it('R8: any overdue bill blocks the purchase, with the reason and the amount to pay', () => {
    const verdict = purchaseGuard(
      [
        bill({ id: 'b2', product: 'oss', amountMinor: 300, paidMinor: 100 }),
        bill({ id: 'b1', amountMinor: 1 }),
        bill({ id: 'b3', amountMinor: 999, dueAt: plusMs(T0, 1) }),
      ],
      'CNY',
      T0,
    );
    expect(verdict).toMatchObject({
      allowed: false,
      reason: 'overdue-bills',
      amountToPayMinor: 201,
      currency: 'CNY',
      overdueBillIds: ['b1', 'b2'],
    });
  });

  it('R8: a fully paid overdue bill does not block', () => {
    expect(purchaseGuard([bill({ paidMinor: 1_000 })], 'USD', T0).allowed).toBe(true);
  });
});

const ctx = (over: Partial<RefundContext> = {}): RefundContext => ({
  now: at('2026-11-27T10:00:00Z'), // a Friday
  timeZone: 'UTC',
  holidays: new Set(),
  minBusinessDays: 2,
  maxBusinessDays: 3,
  ...over,
});

const order = (over: Partial<RefundOrder> = {}): RefundOrder => ({
  id: 'ord-1',
  kind: 'resource-plan',
  currency: 'USD',
  cashPaidMinor: 10_000,
  voucherPaidMinor: 0,
  couponPaidMinor: 0,
  plan: { totalUnits: 1_000, usedUnits: 0, linkedLicenseActivated: false },
  licenseActivated: false,
  promotion: null,
  gifts: [],
  refundedAt: null,
  ...over,
});

describe('R11 refunds', () => {
  const denials: { name: string; over: Partial<RefundOrder>; reason: string }[] = [
    {
      name: 'R11: pay-as-you-go is never refundable',
      over: { kind: 'payg', plan: null },
      reason: 'payg-not-refundable',
    },
    {
      name: 'R11: a yearly SDK subscription cannot be unsubscribed',
      over: { kind: 'yearly-sdk', plan: null },
      reason: 'yearly-sdk-not-unsubscribable',
    },
    {
      name: 'R11: an activated SDK license is not refundable',
      over: { kind: 'sdk-license', plan: null, licenseActivated: true },
      reason: 'license-activated',
    },
    {
      name: 'R11: a plan linked to an activated license counts as fully used',
      over: { plan: { totalUnits: 1_000, usedUnits: 0, linkedLicenseActivated: true } },
      reason: 'plan-license-activated',
    },
    {
      name: 'R11: an order refunded once is not refunded again',
      over: { refundedAt: T0 },
      reason: 'already-refunded',
    },
    {
      name: "R11: a promotion's rules that forbid refunds win",
      over: { promotion: { id: 'promo', refundable: false } },
      reason: 'promotion-rules',
    },
  ];
  it.each(denials)('$name', ({ over, reason }) => {
    const q = quoteRefund(order(over), ctx());
    expect(q).toMatchObject({ refundable: false, reason });
    if (!q.refundable) expect(q.message.length).toBeGreaterThan(10);
  });

  it('R11: only cash is refunded: vouchers and coupons are kept', () => {
    const q = quoteRefund(
      order({ cashPaidMinor: 6_000, voucherPaidMinor: 3_000, couponPaidMinor: 1_000 }),
      ctx(),
    );
    expect(q).toMatchObject({
      refundable: true,
      refundMinor: 6_000,
      keptMinor: { voucher: 3_000, coupon: 1_000, cash: 0 },
    });
  });

  it('R11: a partly used plan refunds the unused share of the cash, rounded down', () => {
    const q = quoteRefund(
      order({
        cashPaidMinor: 1_000,
        plan: { totalUnits: 3, usedUnits: 1, linkedLicenseActivated: false },
      }),
      ctx(),
    );
    expect(q).toMatchObject({ refundMinor: 666, keptMinor: { cash: 334 } });
  });

  it('R11: a plan with a zero total refunds its cash (nothing to consume, no division by zero)', () => {
    const q = quoteRefund(
      order({ plan: { totalUnits: 0, usedUnits: 0, linkedLicenseActivated: false } }),
      ctx(),
    );
    expect(q).toMatchObject({ refundable: true, refundMinor: 10_000 });
  });

  it('R11: huge amounts stay exact', () => {
    const q = quoteRefund(
      order({
        cashPaidMinor: 9_000_000_000_000,
        plan: { totalUnits: 3_000_000, usedUnits: 1, linkedLicenseActivated: false },
      }),
      ctx(),
    );
    expect(q).toMatchObject({ refundMinor: 8_999_997_000_000 });
  });

  it('R11: an unactivated SDK license is refundable', () => {
    expect(quoteRefund(order({ kind: 'sdk-license', plan: null }), ctx())).toMatchObject({
      refundable: true,
      refundMinor: 10_000,
    });
  });

  it('R11: a refund voids the promotional gifts', () => {
    const q = quoteRefund(
      order({
        gifts: [
          { id: 'coupon-9', kind: 'coupon' },
          { id: 'ext-30d', kind: 'extended-period' },
        ],
      }),
      ctx(),
    );
    expect(q).toMatchObject({ voidedGiftIds: ['coupon-9', 'ext-30d'] });
  });

  it("R11: a promotion's rules override the standard ones where they conflict", () => {
    const q = quoteRefund(
      order({
        kind: 'sdk-license',
        plan: null,
        licenseActivated: true,
        promotion: { id: 'p', refundable: true, maxRefundMinor: 2_500 },
      }),
      ctx(),
    );
    expect(q).toMatchObject({
      refundable: true,
      refundMinor: 2_500,
      promotionApplied: true,
      keptMinor: { cash: 7_500 },
    });
  });

  it('R11: the refund arrives within 2–3 business days, skipping the weekend', () => {
    const q = quoteRefund(order(), ctx());
    expect(q).toMatchObject({ arrival: { earliest: '2026-12-01', latest: '2026-12-02' } });
  });

  it('refund window counts from the refund request, not from when the quote is asked', () => {
    // Requested on Friday 2026-11-27, asked about on Monday 2026-11-30: two to three business
    // days after Friday are Tuesday and Wednesday, not Wednesday and Thursday.
    const q = quoteRefund(
      order(),
      ctx({ now: at('2026-11-30T09:00:00Z'), requestedAt: at('2026-11-27T10:00:00Z') }),
    );
    expect(q).toMatchObject({
      requestedAt: '2026-11-27T10:00:00.000Z',
      arrival: { earliest: '2026-12-01', latest: '2026-12-02' },
    });
    // A refund to be requested later counts from that day too (Wednesday: Friday to Monday).
    const later = quoteRefund(
      order(),
      ctx({ now: at('2026-11-30T09:00:00Z'), requestedAt: at('2026-12-02T10:00:00Z') }),
    );
    expect(later).toMatchObject({ arrival: { earliest: '2026-12-04', latest: '2026-12-07' } });
    // Without a request instant, the refund is requested as it is quoted.
    expect(quoteRefund(order(), ctx({ now: at('2026-11-30T09:00:00Z') }))).toMatchObject({
      requestedAt: '2026-11-30T09:00:00.000Z',
      arrival: { earliest: '2026-12-02', latest: '2026-12-03' },
    });
  });

  it('R11: business days skip configured holidays too', () => {
    const q = quoteRefund(order(), ctx({ holidays: new Set(['2026-11-30', '2026-12-02']) }));
    expect(q).toMatchObject({ arrival: { earliest: '2026-12-03', latest: '2026-12-04' } });
  });

  it("R11: business days are counted in the account's zone", () => {
    // 2026-11-27T20:00Z is already Saturday 04:00 in Shanghai.
    const q = quoteRefund(
      order(),
      ctx({ now: at('2026-11-27T20:00:00Z'), timeZone: 'Asia/Shanghai' }),
    );
    expect(q).toMatchObject({ arrival: { earliest: '2026-12-01', latest: '2026-12-02' } });
    const utc = quoteRefund(order(), ctx({ now: at('2026-11-26T20:00:00Z') }));
    expect(utc).toMatchObject({ arrival: { earliest: '2026-11-30', latest: '2026-12-01' } });
  });

  it('R11: adding zero business days stays on the same local day', () => {
    expect(addBusinessDays(at('2026-11-28T12:00:00Z'), 0, 'UTC', new Set()).toISODate()).toBe(
      '2026-11-28',
    );
  });
});
