import { describe, expect, it } from 'vitest';
import { PreparePolicy } from '../../src/adapters/db/client';

describe('PreparePolicy', () => {
  it('prepares a statement text from its second use on', () => {
    const policy = new PreparePolicy();
    expect(policy.decide('select $1')).toBe(false);
    expect(policy.decide('select $1')).toBe(true);
    expect(policy.decide('select $1')).toBe(true);
    expect(policy.decide('select $2')).toBe(false);
  });

  it('stops preparing new texts once its cap is reached, and keeps the ones it has', () => {
    const policy = new PreparePolicy();
    const prepared = (i: number) => {
      policy.decide(`select ${i}`);
      return policy.decide(`select ${i}`);
    };
    let n = 0;
    while (prepared(n)) n += 1;
    expect(n).toBe(300);
    expect(policy.decide('select 0')).toBe(true);
    expect(policy.decide(`select ${n}`)).toBe(false);
  });
});
