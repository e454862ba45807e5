import { describe, expect, it } from 'vitest';
import { persistWithin } from '../../src/adapters/db/persist-within';

describe('persistWithin (recording a sent message while the database is away)', () => {
  it('retries a failing write until it succeeds', async () => {
    let calls = 0;
    const result = await persistWithin(Date.now() + 5_000, () => {
      calls += 1;
      return calls < 3 ? Promise.reject(new Error('ECONNREFUSED')) : Promise.resolve('written');
    });
    expect(result).toBe('written');
    expect(calls).toBe(3);
  });

  it('gives up with the last error once the next wait would pass the deadline', async () => {
    let calls = 0;
    const started = Date.now();
    await expect(
      persistWithin(Date.now() + 250, () => {
        calls += 1;
        return Promise.reject(new Error(`down ${calls}`));
      }),
    ).rejects.toThrow(/^down \d$/);
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
