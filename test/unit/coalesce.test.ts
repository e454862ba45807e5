import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../src/adapters/db/coalesce';

/** A batch function that records each call's requests and answers `x * 10`, after `gate`. */
function recorder(options: { fail?: (batch: readonly number[]) => Error | null } = {}) {
  const calls: number[][] = [];
  let release: () => void = () => undefined;
  let gate: Promise<void> | null = null;
  const run = async (batch: readonly number[]): Promise<number[]> => {
    calls.push([...batch]);
    if (gate !== null) await gate;
    const error = options.fail?.(batch) ?? null;
    if (error !== null) throw error;
    return batch.map((x) => x * 10);
  };
  return {
    calls,
    run,
    hold: () => {
      gate = new Promise<void>((r) => (release = r));
    },
    open: () => {
      gate = null;
      release();
    },
  };
}

const dataError = Object.assign(new Error('check violation'), { code: '23514' });
const options = {
  maxBatch: 3,
  keyOf: (x: number) => String(x % 100),
  retryAlone: (e: unknown) => (e as { code?: string }).code === '23514',
};

describe('Coalescer (DataLoader-style batches)', () => {
  it('requests made in the same tick are one call, and each gets its own result', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, { ...options, maxBatch: 10 });
    const results = await Promise.all([1, 2, 3, 4].map((x) => c.load(x)));
    expect(results).toEqual([10, 20, 30, 40]);
    expect(r.calls).toEqual([[1, 2, 3, 4]]);
  });

  it('requests made while a batch is in flight go together in the next call', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, { ...options, maxBatch: 10 });
    r.hold();
    const first = c.load(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.calls).toEqual([[1]]);
    const later = [c.load(2), c.load(3)];
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(r.calls).toEqual([[1]]);
    r.open();
    expect(await first).toBe(10);
    expect(await Promise.all(later)).toEqual([20, 30]);
    expect(r.calls).toEqual([[1], [2, 3]]);
  });

  it('a caller is answered when its own batch returns, before later batches run', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, { ...options, maxBatch: 2 });
    const order: string[] = [];
    const all = [1, 2, 3].map((x) => c.load(x).then((v) => order.push(`${x}:${v}`)));
    await Promise.all(all);
    expect(r.calls).toEqual([[1, 2], [3]]);
    expect(order).toEqual(['1:10', '2:20', '3:30']);
  });

  it('at most maxBatch per call, and one key never twice in a call', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, options);
    // 101 and 1 share a key (x % 100).
    const results = await Promise.all([1, 101, 2, 3, 4].map((x) => c.load(x)));
    expect(results).toEqual([10, 1010, 20, 30, 40]);
    expect(r.calls).toEqual([
      [1, 2, 3],
      [101, 4],
    ]);
  });

  it('a data error of one request fails that request alone; the others are answered', async () => {
    const r = recorder({ fail: (b) => (b.includes(2) ? dataError : null) });
    const c = new Coalescer(r.run, options);
    const results = await Promise.allSettled([1, 2, 3].map((x) => c.load(x)));
    expect(results).toEqual([
      { status: 'fulfilled', value: 10 },
      { status: 'rejected', reason: dataError },
      { status: 'fulfilled', value: 30 },
    ]);
    expect(r.calls[0]).toEqual([1, 2, 3]);
    expect(r.calls.slice(1).sort()).toEqual([[1], [2], [3]]);
  });

  it('any other error fails the whole batch at once (not retried request by request)', async () => {
    const down = new Error('connect ECONNREFUSED');
    let broken = true;
    const r = recorder({ fail: () => (broken ? down : null) });
    const c = new Coalescer(r.run, options);
    const results = await Promise.allSettled([1, 2, 3].map((x) => c.load(x)));
    expect(results.every((x) => x.status === 'rejected' && x.reason === down)).toBe(true);
    expect(r.calls).toEqual([[1, 2, 3]]);
    // Once the database is back, the same coalescer answers the next requests.
    broken = false;
    expect(await Promise.all([c.load(5), c.load(6)])).toEqual([50, 60]);
    expect(r.calls).toEqual([
      [1, 2, 3],
      [5, 6],
    ]);
  });
});

describe('Coalescer without keys or retries', () => {
  it('rejects every request of a failed batch and keeps serving later ones', async () => {
    let calls = 0;
    const c = new Coalescer<number, number>(
      (inputs) => {
        calls += 1;
        if (calls === 1) return Promise.reject(Object.assign(new Error('bad'), { code: '23514' }));
        return Promise.resolve(inputs.map((i) => i * 10));
      },
      { maxBatch: 500 },
    );
    const failed = [c.load(1), c.load(2)].map((p) => p.catch((e: Error) => e.message));
    expect(await Promise.all(failed)).toEqual(['bad', 'bad']);
    expect(calls).toBe(1);
    expect(await c.load(3)).toBe(30);
  });

  it('rejects a batch answered with the wrong number of results', async () => {
    const c = new Coalescer<number, number>(() => Promise.resolve([1]), { maxBatch: 500 });
    const answers = [c.load(1), c.load(1)].map((p) => p.catch((e: Error) => e.message));
    expect(await Promise.all(answers)).toEqual([
      'batch answered 1 results for 2 requests',
      'batch answered 1 results for 2 requests',
    ]);
  });
});
