import { isOverdue } from './decide';
import { unpaidMinor, type Minor } from './money';
import type { BillSnapshot } from './snapshot';

/** R8: no resource plan may be bought while any overdue bill exists. */
export type PurchaseVerdict =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      readonly reason: 'overdue-bills';
      /** Human-readable reason, in English, for API callers and logs. */
      readonly message: string;
      /** What must be paid before a plan can be bought. */
      readonly amountToPayMinor: Minor;
      readonly currency: string;
      readonly overdueBillIds: readonly string[];
    };

export function purchaseGuard(
  bills: readonly BillSnapshot[],
  currency: string,
  now: Date,
): PurchaseVerdict {
  const overdue = bills.filter((b) => isOverdue(b, now));
  if (overdue.length === 0) return { allowed: true };
  let amount = 0;
  for (const bill of overdue) amount += unpaidMinor(bill.amountMinor, bill.paidMinor);
  return {
    allowed: false,
    reason: 'overdue-bills',
    message: `The account has ${overdue.length} overdue bill(s); pay them before buying a resource plan.`,
    amountToPayMinor: amount,
    currency,
    overdueBillIds: overdue.map((b) => b.id).sort(),
  };
}
