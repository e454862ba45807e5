import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../src/adapters/db/coalesce';

/** A `run` that records each batch it was given and answers after `release()`. */
function recorder() {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const run = async (inputs: readonly number[]): Promise<string[]> => {
    batches.push([...inputs]);
    await new Promise<void>((resolve) => gates.push(resolve));
    return inputs.map((i) => `r${i}`);
  };
  const release = async () => {
    while (gates.length === 0) await new Promise((r) => setImmediate(r));
    gates.shift()?.();
  };
  return { batches, run, release };
}

describe('Coalescer', () => {
  it('sends requests made in the same turn as one batch and gives each caller its own result', async () => {
    const r = recorder();
    const c = new Coalescer(r.run);
    const answers = Promise.all([1, 2, 3].map((i) => c.load(i)));
    await r.release();
    expect(await answers).toEqual(['r1', 'r2', 'r3']);
    expect(r.batches).toEqual([[1, 2, 3]]);
  });

  it('holds requests made while a batch is in flight and sends them together after it', async () => {
    const r = recorder();
    const c = new Coalescer(r.run);
    const first = c.load(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.batches).toEqual([[1]]);
    const later = [c.load(2), c.load(3)];
    await new Promise((resolve) => setImmediate(resolve));
    const laterStill = c.load(4);
    // Still one batch in flight: nothing else has left.
    expect(r.batches).toEqual([[1]]);
    await r.release();
    expect(await first).toBe('r1');
    await r.release();
    expect(await Promise.all([...later, laterStill])).toEqual(['r2', 'r3', 'r4']);
    expect(r.batches).toEqual([[1], [2, 3, 4]]);
  });

  it('splits a backlog larger than the batch limit', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 2);
    const answers = Promise.all([1, 2, 3, 4, 5].map((i) => c.load(i)));
    for (let i = 0; i < 3; i += 1) await r.release();
    expect(await answers).toEqual(['r1', 'r2', 'r3', 'r4', 'r5']);
    expect(r.batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('rejects every request of a failed batch and keeps serving later ones', async () => {
    let calls = 0;
    const c = new Coalescer<number, number>((inputs) => {
      calls += 1;
      if (calls === 1) return Promise.reject(new Error('connection lost'));
      return Promise.resolve(inputs.map((i) => i * 10));
    });
    const failed = [c.load(1), c.load(2)].map((p) => p.catch((e: Error) => e.message));
    expect(await Promise.all(failed)).toEqual(['connection lost', 'connection lost']);
    expect(await c.load(3)).toBe(30);
  });

  it('rejects a batch answered with the wrong number of results', async () => {
    const c = new Coalescer<number, number>(() => Promise.resolve([1]));
    const answers = [c.load(1), c.load(2)].map((p) => p.catch((e: Error) => e.message));
    expect(await Promise.all(answers)).toEqual([
      'batch of 2 answered with 1 results',
      'batch of 2 answered with 1 results',
    ]);
  });
});
