import { CURRENCY_RE } from './formats';

/**
 * Money is an integer count of minor units (cents, fen, ...) of the account's currency.
 * Never a float: every function here rejects non-integers so a bad row fails loudly.
 */

export type Minor = number;

export interface Money {
  /** Integer minor units (e.g. cents). */
  readonly amountMinor: Minor;
  /** ISO 4217 code, upper case. */
  readonly currency: string;
}

export function isMinor(value: unknown): value is Minor {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

export function assertMinor(value: number, what = 'amount'): Minor {
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`${what} must be a safe integer of minor units, got ${value}`);
  }
  return value;
}

export function isCurrencyCode(code: string): boolean {
  if (!CURRENCY_RE.test(code)) return false;
  try {
    // Intl knows every ISO 4217 code; an unknown code is rejected by `supportedValuesOf`.
    return Intl.supportedValuesOf('currency').includes(code);
  } catch {
    return false;
  }
}

/**
 * Intl formatters by their options: building one costs far more than using it (a message renders
 * several amounts), and they are immutable. Bounded: cleared when it grows past 1,000 entries.
 */
const formatters = new Map<string, Intl.NumberFormat>();

function currencyFormatter(locale: string, currency: string, digits?: number): Intl.NumberFormat {
  const key = `${locale}|${currency}|${digits ?? ''}`;
  let f = formatters.get(key);
  if (f === undefined) {
    f = new Intl.NumberFormat(locale, {
      style: 'currency',
      currency,
      ...(digits === undefined
        ? {}
        : { minimumFractionDigits: digits, maximumFractionDigits: digits }),
    });
    if (formatters.size >= 1_000) formatters.clear();
    formatters.set(key, f);
  }
  return f;
}

/** Number of minor-unit digits of a currency (USD 2, JPY 0, KWD 3). */
export function minorDigits(currency: string): number {
  return currencyFormatter('en', currency).resolvedOptions().maximumFractionDigits ?? 2;
}

export function sumMinor(values: readonly Minor[]): Minor {
  let total = 0;
  for (const v of values) total += v;
  return assertMinor(total, 'sum');
}

/** Unpaid part of a bill, never negative (an overpaid bill owes nothing). */
export function unpaidMinor(amountMinor: Minor, paidMinor: Minor): Minor {
  return Math.max(0, amountMinor - paidMinor);
}

/**
 * Formats minor units for people, e.g. 123456 USD in en → "$1,234.56", in zh-CN → "US$1,234.56".
 * Conversion goes through a decimal string, not a float division, so no rounding error appears.
 */
export function formatMoney(money: Money, locale: string): string {
  const digits = minorDigits(money.currency);
  const negative = money.amountMinor < 0;
  const abs = String(Math.abs(money.amountMinor)).padStart(digits + 1, '0');
  const decimal =
    digits === 0 ? abs : `${abs.slice(0, abs.length - digits)}.${abs.slice(abs.length - digits)}`;
  const formatter = currencyFormatter(locale, money.currency, digits);
  // Intl accepts decimal strings exactly (ES2023 "string as exact decimal").
  return formatter.format(`${negative ? '-' : ''}${decimal}` as unknown as number);
}
