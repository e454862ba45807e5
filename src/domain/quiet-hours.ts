import { DateTime } from 'luxon';
import type { QuietHours } from './rules';

/**
 * SMS quiet hours in the customer's zone. Returns `now` when an SMS may go now, else the first
 * instant after quiet hours end (the local end time, DST-correct: if that wall time does not
 * exist on the day, luxon moves it forward past the gap).
 */
export function nextSmsSendInstant(now: Date, zone: string, quiet: QuietHours): Date {
  const { startMinute, endMinute } = quiet;
  if (startMinute === endMinute) return now;
  const local = DateTime.fromJSDate(now, { zone });
  const minute = local.hour * 60 + local.minute;
  const wraps = startMinute > endMinute; // e.g. 22:00–08:00 spans midnight
  const inQuiet = wraps
    ? minute >= startMinute || minute < endMinute
    : minute >= startMinute && minute < endMinute;
  if (!inQuiet) return now;
  const endToday = local.startOf('day').set({
    hour: Math.floor(endMinute / 60),
    minute: endMinute % 60,
  });
  // Quiet ends today when we are before the end time, otherwise tomorrow.
  const end = minute < endMinute ? endToday : endToday.plus({ days: 1 });
  return end.toJSDate();
}
