import { DateTime, IANAZone } from 'luxon';
import type { ReminderPeriod } from './rules';

/** Time helpers for the domain. `now` is always an argument; nothing here reads the clock. */

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/**
 * Zone names already checked. Luxon checks a zone by building an Intl.DateTimeFormat (about half a
 * millisecond); every evaluation checks its account's zone, and accounts share a few hundred zones
 * at most. Bounded so that a flood of made-up names cannot grow it without limit.
 */
const checkedZones = new Map<string, boolean>();
const MAX_CHECKED_ZONES = 2_000;

export function isValidZone(zone: string): boolean {
  const known = checkedZones.get(zone);
  if (known !== undefined) return known;
  const valid = IANAZone.isValidZone(zone);
  if (checkedZones.size < MAX_CHECKED_ZONES) checkedZones.set(zone, valid);
  return valid;
}

/** Calendar date (YYYY-MM-DD) of an instant in an IANA zone. */
export function localDate(instant: Date, zone: string): string {
  const date = DateTime.fromJSDate(instant, { zone }).toISODate();
  // toISODate is null only for an invalid zone, which snapshot validation rules out.
  return date ?? instant.toISOString().slice(0, 10);
}

/**
 * Label of the reminder window containing `now`: the local date for a per-day period, or the
 * index of the fixed window since the Unix epoch. Two instants in one window share a label, so a
 * reminder keyed by it goes out at most once per window.
 */
export function periodLabel(period: ReminderPeriod, now: Date, zone: string): string {
  if (period.kind === 'local-day') return localDate(now, zone);
  return `w${Math.floor(now.getTime() / period.ms)}`;
}

export function addMs(instant: Date, ms: number): Date {
  return new Date(instant.getTime() + ms);
}

/** First instant after the reminder window containing `now` (next local midnight, or window end). */
export function periodEnd(period: ReminderPeriod, now: Date, zone: string): Date {
  if (period.kind === 'every') {
    return new Date((Math.floor(now.getTime() / period.ms) + 1) * period.ms);
  }
  const local = DateTime.fromJSDate(now, { zone });
  return local.isValid
    ? local.startOf('day').plus({ days: 1 }).toJSDate()
    : new Date(now.getTime() + 86_400_000);
}
