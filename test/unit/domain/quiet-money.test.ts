import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/domain/keys';
import {
  assertMinor,
  formatMoney,
  isCurrencyCode,
  minorDigits,
  sumMinor,
} from '../../../src/domain/money';
import { nextSmsSendInstant } from '../../../src/domain/quiet-hours';
import { at } from '../../support/builders';

const NIGHT = { startMinute: 22 * 60, endMinute: 8 * 60 };

describe('SMS quiet hours', () => {
  const cases: {
    name: string;
    now: string;
    zone: string;
    quiet?: { startMinute: number; endMinute: number };
    expected: string;
  }[] = [
    {
      name: 'daytime sends now',
      now: '2026-06-10T12:00:00Z',
      zone: 'UTC',
      expected: '2026-06-10T12:00:00.000Z',
    },
    {
      name: '22:00 exactly is quiet until 08:00 the next day',
      now: '2026-06-10T22:00:00Z',
      zone: 'UTC',
      expected: '2026-06-11T08:00:00.000Z',
    },
    {
      name: '03:00 is quiet until 08:00 the same day',
      now: '2026-06-10T03:00:00Z',
      zone: 'UTC',
      expected: '2026-06-10T08:00:00.000Z',
    },
    {
      name: '08:00 exactly sends now',
      now: '2026-06-10T08:00:00Z',
      zone: 'UTC',
      expected: '2026-06-10T08:00:00.000Z',
    },
    {
      name: 'local time, not UTC: 23:00 in Shanghai is 15:00 UTC',
      now: '2026-06-10T15:00:00Z',
      zone: 'Asia/Shanghai',
      expected: '2026-06-11T00:00:00.000Z',
    },
    // New York springs forward 2026-03-08 02:00 → 03:00: the night is one hour shorter.
    {
      name: 'spring-forward night ends at 08:00 EDT',
      now: '2026-03-08T03:30:00Z',
      zone: 'America/New_York',
      expected: '2026-03-08T12:00:00.000Z',
    },
    // New York falls back 2026-11-01 02:00 → 01:00: the night is one hour longer.
    {
      name: 'fall-back night ends at 08:00 EST',
      now: '2026-11-01T03:30:00Z',
      zone: 'America/New_York',
      expected: '2026-11-01T13:00:00.000Z',
    },
    {
      name: 'a daytime window (12:00–14:00) that does not wrap',
      now: '2026-06-10T13:00:00Z',
      zone: 'UTC',
      quiet: { startMinute: 720, endMinute: 840 },
      expected: '2026-06-10T14:00:00.000Z',
    },
    {
      name: 'equal start and end means no quiet hours',
      now: '2026-06-10T23:00:00Z',
      zone: 'UTC',
      quiet: { startMinute: 0, endMinute: 0 },
      expected: '2026-06-10T23:00:00.000Z',
    },
  ];
  it.each(cases)('$name', ({ now, zone, quiet, expected }) => {
    expect(nextSmsSendInstant(at(now), zone, quiet ?? NIGHT).toISOString()).toBe(expected);
  });
});

describe('money in integer minor units', () => {
  it('formats by currency digits and locale without float error', () => {
    expect(formatMoney({ amountMinor: 123_456, currency: 'USD' }, 'en')).toBe('$1,234.56');
    expect(formatMoney({ amountMinor: 5, currency: 'USD' }, 'en')).toBe('$0.05');
    expect(formatMoney({ amountMinor: -5, currency: 'USD' }, 'en')).toBe('-$0.05');
    expect(formatMoney({ amountMinor: 1_234, currency: 'JPY' }, 'en')).toBe('¥1,234');
    expect(formatMoney({ amountMinor: 123_456, currency: 'CNY' }, 'zh-CN')).toBe('¥1,234.56');
    expect(formatMoney({ amountMinor: 900_719_925_474_099, currency: 'USD' }, 'en')).toBe(
      '$9,007,199,254,740.99',
    );
  });

  it('knows minor digits per currency', () => {
    expect([minorDigits('USD'), minorDigits('JPY'), minorDigits('KWD')]).toEqual([2, 0, 3]);
  });

  it('recognises ISO currency codes only', () => {
    expect(isCurrencyCode('EUR')).toBe(true);
    expect(isCurrencyCode('eur')).toBe(false);
    expect(isCurrencyCode('ZZZ')).toBe(false);
  });

  it('refuses fractions and unsafe integers', () => {
    expect(() => assertMinor(1.5)).toThrow(RangeError);
    expect(() => sumMinor([Number.MAX_SAFE_INTEGER, 1])).toThrow(RangeError);
    expect(sumMinor([1, 2, 3])).toBe(6);
  });
});

describe('idempotency key builders', () => {
  it('refuse parts that could break a job id', () => {
    expect(() => keys.release('inst:1', 1)).toThrow(RangeError);
    expect(keys.release('inst-1', 3)).toBe('release-v1-inst-1-e3');
    expect(keys.invalid('a:b c', 'bad-id')).toBe('invalid-v1-a_b_c-bad-id');
  });
});
