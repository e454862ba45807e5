import type { Minor } from './money';

/**
 * Where money goes (R7: paid amounts come only from payments). Pure and synchronous: the ingest
 * store loads the account's bills, runs these functions in request order and writes the result.
 *
 * Invariants (property-tested):
 * - conservation: the amounts allocated to bills plus the balance credit equal the payment;
 * - no bill is paid beyond what it owes (`amountMinor - paidMinor`, 0 for a void bill);
 * - a reversal applied right after its payment restores every bill and the balance.
 */

export type BillLedgerStatus = 'unpaid' | 'paid' | 'void';

/** A bill as the allocator sees it. */
export interface LedgerBill {
  readonly id: string;
  readonly amountMinor: Minor;
  readonly paidMinor: Minor;
  readonly status: BillLedgerStatus;
  readonly dueAt: Date;
}

export interface Allocation {
  readonly billId: string;
  readonly amountMinor: Minor;
}

/** What one payment did: the bills it paid and what went to the available balance. */
export interface PaymentEffect {
  readonly allocations: readonly Allocation[];
  readonly balanceCreditMinor: Minor;
}

export type AllocationResult =
  | {
      readonly ok: true;
      readonly effect: PaymentEffect;
      /** The bills after the payment (only the changed ones). */
      readonly bills: readonly LedgerBill[];
    }
  | { readonly ok: false; readonly reason: 'unknown-bill' | 'void-bill'; readonly message: string };

/** What a bill still owes: nothing when void or paid in full. */
export function owedMinor(bill: LedgerBill): Minor {
  return bill.status === 'void' ? 0 : Math.max(0, bill.amountMinor - bill.paidMinor);
}

/** The status a bill has with this paid amount (void stays void). */
export function statusFor(
  bill: Pick<LedgerBill, 'amountMinor' | 'status'>,
  paidMinor: Minor,
): BillLedgerStatus {
  if (bill.status === 'void') return 'void';
  return paidMinor >= bill.amountMinor ? 'paid' : 'unpaid';
}

function pay(bill: LedgerBill, amountMinor: Minor): LedgerBill {
  const paidMinor = bill.paidMinor + amountMinor;
  return { ...bill, paidMinor, status: statusFor(bill, paidMinor) };
}

/**
 * Allocates a payment of `amountMinor` (> 0) of one account.
 * - Naming a bill: pays that bill up to what it owes; the rest is credited to the balance. A void
 *   bill refuses the payment; a bill not in `bills` is unknown.
 * - Naming none: pays the account's unpaid bills, earliest due first (then by id), every product
 *   alike (R6), and credits the rest to the balance.
 */
export function allocatePayment(
  amountMinor: Minor,
  billId: string | null,
  bills: readonly LedgerBill[],
): AllocationResult {
  let targets: LedgerBill[];
  if (billId !== null) {
    const bill = bills.find((b) => b.id === billId);
    if (bill === undefined) {
      return { ok: false, reason: 'unknown-bill', message: `bill ${billId} not found` };
    }
    if (bill.status === 'void') {
      return {
        ok: false,
        reason: 'void-bill',
        message: `bill ${billId} is void and takes no payment`,
      };
    }
    targets = [bill];
  } else {
    targets = bills
      .filter((b) => owedMinor(b) > 0)
      .sort((a, b) => a.dueAt.getTime() - b.dueAt.getTime() || (a.id < b.id ? -1 : 1));
  }
  let left = amountMinor;
  const allocations: Allocation[] = [];
  const changed: LedgerBill[] = [];
  for (const bill of targets) {
    if (left === 0) break;
    const part = Math.min(left, owedMinor(bill));
    if (part === 0) continue;
    allocations.push({ billId: bill.id, amountMinor: part });
    changed.push(pay(bill, part));
    left -= part;
  }
  return { ok: true, effect: { allocations, balanceCreditMinor: left }, bills: changed };
}

export interface ReversalResult {
  /** The bills after the reversal (only the changed ones). */
  readonly bills: readonly LedgerBill[];
  /** Taken back from the available balance: the payment's balance credit, plus any part of an
   * allocation its bill no longer holds (it was handed to the balance when the bill was lowered
   * or voided). */
  readonly balanceDebitMinor: Minor;
}

/**
 * Undoes exactly one payment's effect: each allocation comes off its bill (as far as the bill
 * still holds it) and the balance credit comes off the balance. The total taken back equals the
 * payment.
 */
export function reversePayment(
  effect: PaymentEffect,
  bills: readonly LedgerBill[],
): ReversalResult {
  const byId = new Map(bills.map((b) => [b.id, b]));
  let balanceDebitMinor = effect.balanceCreditMinor;
  for (const allocation of effect.allocations) {
    const bill = byId.get(allocation.billId);
    const fromBill = bill === undefined ? 0 : Math.min(allocation.amountMinor, bill.paidMinor);
    if (bill !== undefined && fromBill > 0) {
      const paidMinor = bill.paidMinor - fromBill;
      byId.set(bill.id, { ...bill, paidMinor, status: statusFor(bill, paidMinor) });
    }
    balanceDebitMinor += allocation.amountMinor - fromBill;
  }
  const touched = new Set(effect.allocations.map((a) => a.billId));
  return {
    bills: [...byId.values()].filter((b) => touched.has(b.id)),
    balanceDebitMinor,
  };
}

export interface BillRevision {
  /** The bill after the revision. */
  readonly bill: LedgerBill;
  /** Paid beyond the new amount (or everything paid on a now void bill): credited to the balance. */
  readonly balanceCreditMinor: Minor;
}

/**
 * A bill's new amount or void status from the billing system. `paidMinor` is never taken from
 * the writer: it stays, except that what was paid beyond the new amount (all of it, once void)
 * moves to the available balance.
 */
export function reviseBill(
  current: LedgerBill | null,
  next: {
    readonly id: string;
    readonly amountMinor: Minor;
    readonly void: boolean;
    readonly dueAt: Date;
  },
): BillRevision {
  const paid = current?.paidMinor ?? 0;
  const limit = next.void ? 0 : next.amountMinor;
  const balanceCreditMinor = Math.max(0, paid - limit);
  const paidMinor = paid - balanceCreditMinor;
  const status: BillLedgerStatus = next.void
    ? 'void'
    : paidMinor >= next.amountMinor
      ? 'paid'
      : 'unpaid';
  return {
    bill: { id: next.id, amountMinor: next.amountMinor, paidMinor, status, dueAt: next.dueAt },
    balanceCreditMinor,
  };
}
