import { DateTime } from 'luxon';

/**
 * Business-day arithmetic in an account's zone: Saturdays, Sundays and the configured holidays
 * (ISO dates, YYYY-MM-DD, local to the account) are skipped.
 */

export function isBusinessDay(date: DateTime, holidays: ReadonlySet<string>): boolean {
  return date.weekday <= 5 && !holidays.has(date.toISODate() ?? '');
}

/**
 * The local date `days` business days after the local date of `from`. The day of `from` itself
 * does not count, so a refund requested on Friday with 2 days arrives by Tuesday.
 */
export function addBusinessDays(
  from: Date,
  days: number,
  zone: string,
  holidays: ReadonlySet<string>,
): DateTime {
  let date = DateTime.fromJSDate(from, { zone }).startOf('day');
  let left = days;
  // Bounded: at most `days` business days plus every weekend and holiday between them.
  for (let guard = 0; left > 0 && guard < 3660; guard += 1) {
    date = date.plus({ days: 1 });
    if (isBusinessDay(date, holidays)) left -= 1;
  }
  return date;
}
