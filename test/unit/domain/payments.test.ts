import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, classifyVersion } from '../../../src/domain/ingest';
import {
  allocatePayment,
  owedMinor,
  reversePayment,
  reviseBill,
  type LedgerBill,
} from '../../../src/domain/payments';
import { T0, plusMs } from '../../support/builders';

const HOUR = 3_600_000;

function bill(over: Partial<LedgerBill> = {}): LedgerBill {
  return { id: 'b1', amountMinor: 1_000, paidMinor: 0, status: 'unpaid', dueAt: T0, ...over };
}

describe('allocatePayment', () => {
  it('a payment naming a bill pays it up to what it owes and credits the rest', () => {
    const result = allocatePayment(1_500, 'b1', [bill({ paidMinor: 200 })]);
    expect(result).toEqual({
      ok: true,
      effect: { allocations: [{ billId: 'b1', amountMinor: 800 }], balanceCreditMinor: 700 },
      bills: [bill({ paidMinor: 1_000, status: 'paid' })],
    });
  });

  it('a payment naming a paid bill goes to the balance whole', () => {
    const result = allocatePayment(300, 'b1', [bill({ paidMinor: 1_000, status: 'paid' })]);
    expect(result).toMatchObject({
      ok: true,
      effect: { allocations: [], balanceCreditMinor: 300 },
    });
  });

  it('a void bill refuses payments', () => {
    expect(allocatePayment(100, 'b1', [bill({ status: 'void' })])).toMatchObject({
      ok: false,
      reason: 'void-bill',
    });
  });

  it('an unknown bill is refused', () => {
    expect(allocatePayment(100, 'nope', [bill()])).toMatchObject({
      ok: false,
      reason: 'unknown-bill',
    });
  });

  it('without a bill: oldest due unpaid bills first, every product, then the balance', () => {
    const bills = [
      bill({ id: 'late', dueAt: plusMs(T0, 2 * HOUR) }),
      bill({ id: 'early', dueAt: plusMs(T0, -HOUR), amountMinor: 300 }),
      bill({ id: 'void', dueAt: plusMs(T0, -2 * HOUR), status: 'void' }),
      bill({ id: 'paid', dueAt: plusMs(T0, -3 * HOUR), paidMinor: 1_000, status: 'paid' }),
    ];
    const result = allocatePayment(2_000, null, bills);
    expect(result).toMatchObject({
      ok: true,
      effect: {
        allocations: [
          { billId: 'early', amountMinor: 300 },
          { billId: 'late', amountMinor: 1_000 },
        ],
        balanceCreditMinor: 700,
      },
    });
  });
});

describe('reviseBill', () => {
  it('a lowered amount below what was paid credits the difference', () => {
    const revision = reviseBill(bill({ paidMinor: 1_000, status: 'paid' }), {
      id: 'b1',
      amountMinor: 600,
      void: false,
      dueAt: T0,
    });
    expect(revision).toEqual({
      bill: bill({ amountMinor: 600, paidMinor: 600, status: 'paid' }),
      balanceCreditMinor: 400,
    });
  });

  it('a raised amount makes a paid bill owe again, and paid is never taken from the writer', () => {
    const revision = reviseBill(bill({ paidMinor: 1_000, status: 'paid' }), {
      id: 'b1',
      amountMinor: 1_500,
      void: false,
      dueAt: T0,
    });
    expect(revision.bill).toMatchObject({ paidMinor: 1_000, status: 'unpaid' });
    expect(revision.balanceCreditMinor).toBe(0);
  });

  it('voiding hands everything paid to the balance', () => {
    const revision = reviseBill(bill({ paidMinor: 250 }), {
      id: 'b1',
      amountMinor: 1_000,
      void: true,
      dueAt: T0,
    });
    expect(revision).toMatchObject({
      bill: { paidMinor: 0, status: 'void' },
      balanceCreditMinor: 250,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Properties.

const billArb: fc.Arbitrary<LedgerBill> = fc
  .record({
    id: fc.stringMatching(/^b[0-9]{1,2}$/),
    amountMinor: fc.integer({ min: 0, max: 100_000 }),
    paidFraction: fc.integer({ min: 0, max: 120 }),
    isVoid: fc.boolean(),
    dueOffsetH: fc.integer({ min: -100, max: 100 }),
  })
  .map(({ id, amountMinor, paidFraction, isVoid, dueOffsetH }) => {
    const paidMinor = isVoid ? 0 : Math.floor((amountMinor * paidFraction) / 100);
    return {
      id,
      amountMinor,
      paidMinor,
      status: isVoid ? 'void' : paidMinor >= amountMinor ? 'paid' : 'unpaid',
      dueAt: plusMs(T0, dueOffsetH * HOUR),
    } satisfies LedgerBill;
  });

const ledgerArb = fc.uniqueArray(billArb, { selector: (b) => b.id, maxLength: 8 });
const paymentArb = fc.integer({ min: 1, max: 300_000 });

function apply(bills: readonly LedgerBill[], changed: readonly LedgerBill[]): LedgerBill[] {
  const byId = new Map(bills.map((b) => [b.id, b]));
  for (const b of changed) byId.set(b.id, b);
  return [...byId.values()];
}

describe('money properties', () => {
  it('money is conserved: allocations plus the balance credit equal the payment', () => {
    fc.assert(
      fc.property(ledgerArb, paymentArb, fc.option(fc.nat(8)), (bills, amount, pick) => {
        const target = pick === null ? null : (bills[pick % Math.max(1, bills.length)]?.id ?? null);
        const result = allocatePayment(amount, target, bills);
        if (!result.ok) return;
        const allocated = result.effect.allocations.reduce((s, a) => s + a.amountMinor, 0);
        expect(allocated + result.effect.balanceCreditMinor).toBe(amount);
        expect(result.effect.balanceCreditMinor).toBeGreaterThanOrEqual(0);
      }),
    );
  });

  it('no bill is over-paid', () => {
    fc.assert(
      fc.property(ledgerArb, paymentArb, fc.option(fc.nat(8)), (bills, amount, pick) => {
        const target = pick === null ? null : (bills[pick % Math.max(1, bills.length)]?.id ?? null);
        const result = allocatePayment(amount, target, bills);
        if (!result.ok) return;
        for (const allocation of result.effect.allocations) {
          const before = bills.find((b) => b.id === allocation.billId);
          expect(before).toBeDefined();
          expect(allocation.amountMinor).toBeGreaterThan(0);
          expect(allocation.amountMinor).toBeLessThanOrEqual(owedMinor(before as LedgerBill));
        }
        for (const after of result.bills) {
          const before = bills.find((b) => b.id === after.id) as LedgerBill;
          // Never more paid than owed, unless it already was (a table writer's overpaid bill).
          expect(after.paidMinor).toBeLessThanOrEqual(
            Math.max(after.amountMinor, before.paidMinor),
          );
        }
      }),
    );
  });

  it('a reversal restores the state before the payment', () => {
    fc.assert(
      fc.property(ledgerArb, paymentArb, fc.option(fc.nat(8)), (bills, amount, pick) => {
        const target = pick === null ? null : (bills[pick % Math.max(1, bills.length)]?.id ?? null);
        const result = allocatePayment(amount, target, bills);
        if (!result.ok) return;
        const paidState = apply(bills, result.bills);
        const reversal = reversePayment(result.effect, paidState);
        expect(apply(paidState, reversal.bills)).toEqual(bills);
        expect(reversal.balanceDebitMinor).toBe(result.effect.balanceCreditMinor);
      }),
    );
  });

  it('a reversal after the bill was lowered takes back exactly the payment', () => {
    fc.assert(
      fc.property(paymentArb, fc.integer({ min: 0, max: 100_000 }), (amount, lowered) => {
        const start = bill({ amountMinor: 100_000 });
        const paid = allocatePayment(amount, 'b1', [start]);
        if (!paid.ok) throw new Error('unexpected refusal');
        const revised = reviseBill(paid.bills[0] ?? start, {
          id: 'b1',
          amountMinor: lowered,
          void: false,
          dueAt: T0,
        });
        const reversal = reversePayment(paid.effect, [revised.bill]);
        const fromBill = revised.bill.paidMinor - (reversal.bills[0]?.paidMinor ?? 0);
        expect(fromBill + reversal.balanceDebitMinor).toBe(amount);
        expect(reversal.bills[0]?.paidMinor).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});

describe('version rules', () => {
  const stored = { accountId: 'a', version: 3, hash: 'h' };
  const cases: [string, Parameters<typeof classifyVersion>, string][] = [
    ['nothing stored → create', [null, { accountId: 'a', version: 0, hash: 'x' }], 'create'],
    ['newer → update', [stored, { accountId: 'a', version: 4, hash: 'x' }], 'update'],
    [
      'same version, same body → duplicate',
      [stored, { accountId: 'a', version: 3, hash: 'h' }],
      'duplicate',
    ],
    [
      'older, same body → duplicate',
      [stored, { accountId: 'a', version: 2, hash: 'h' }],
      'duplicate',
    ],
    [
      'same version, other body → conflict',
      [stored, { accountId: 'a', version: 3, hash: 'x' }],
      'conflict',
    ],
    [
      'older, other body → conflict',
      [stored, { accountId: 'a', version: 1, hash: 'x' }],
      'conflict',
    ],
    ['other account → conflict', [stored, { accountId: 'b', version: 9, hash: 'h' }], 'conflict'],
    [
      'a table-written row at the same version is adopted',
      [
        { accountId: 'a', version: 0, hash: null },
        { accountId: 'a', version: 0, hash: 'x' },
      ],
      'update',
    ],
    [
      'a table-written row is not overwritten by an older version',
      [
        { accountId: 'a', version: 5, hash: null },
        { accountId: 'a', version: 4, hash: 'x' },
      ],
      'conflict',
    ],
  ];
  for (const [name, args, kind] of cases) {
    it(name, () => expect(classifyVersion(...args).kind).toBe(kind));
  }

  it('canonical JSON orders keys and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { f: 2, e: undefined }], c: null } })).toBe(
      '{"a":{"c":null,"d":[1,{"f":2}]},"b":1}',
    );
  });
});
