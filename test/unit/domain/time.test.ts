import { describe, expect, it } from 'vitest';
import { isValidZone } from '../../../src/domain/time';

describe('isValidZone (cached)', () => {
  it('answers the same the first time and from the cache', () => {
    for (let round = 0; round < 2; round++) {
      expect(isValidZone('Asia/Shanghai')).toBe(true);
      expect(isValidZone('Europe/Berlin')).toBe(true);
      expect(isValidZone('Mars/Olympus_Mons')).toBe(false);
      expect(isValidZone('')).toBe(false);
    }
  });

  it('still answers past the cache bound', () => {
    for (let i = 0; i < 2_100; i++) expect(isValidZone(`Nowhere/Zone_${i}`)).toBe(false);
    expect(isValidZone('America/New_York')).toBe(true);
  });
});
