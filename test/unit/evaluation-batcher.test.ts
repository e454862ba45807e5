import { describe, expect, it } from 'vitest';
import type { BatchOutcome, EvaluationRequest } from '../../src/adapters/db/evaluation';
import { EvaluationBatcher } from '../../jobs/evaluation-batcher';

/** A batch runner that records each batch and answers when told to. */
function recordingRunner() {
  const batches: string[][] = [];
  const pending: (() => void)[] = [];
  const run = (requests: readonly EvaluationRequest[]) => {
    batches.push(requests.map((r) => r.accountId));
    return new Promise<Map<string, BatchOutcome>>((resolve) => {
      pending.push(() =>
        resolve(
          new Map(
            requests.map((r) => [
              r.accountId,
              { status: 'evaluated', decisions: [], newEffects: r.accountId.length },
            ]),
          ),
        ),
      );
    });
  };
  return { batches, pending, run };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const req = (accountId: string): EvaluationRequest => ({ accountId, actor: 'daemon' });

describe('EvaluationBatcher', () => {
  it('runs a lone request at once and groups the requests that arrive meanwhile', async () => {
    const r = recordingRunner();
    const batcher = new EvaluationBatcher(r.run, 3);
    const first = batcher.evaluate(req('a'));
    await tick();
    expect(r.batches).toEqual([['a']]);
    // Two batches may be in flight; further requests wait for one of them to finish.
    const second = batcher.evaluate(req('b'));
    await tick();
    const rest = ['c', 'd', 'e', 'f', 'g'].map((id) => batcher.evaluate(req(id)));
    await tick();
    expect(r.batches).toEqual([['a'], ['b']]);
    r.pending.shift()?.();
    await first;
    await tick();
    expect(r.batches).toEqual([['a'], ['b'], ['c', 'd', 'e']]);
    r.pending.shift()?.();
    await second;
    await tick();
    expect(r.batches).toEqual([['a'], ['b'], ['c', 'd', 'e'], ['f', 'g']]);
    r.pending.shift()?.();
    r.pending.shift()?.();
    const outcomes = await Promise.all(rest);
    expect(outcomes.map((o) => (o.status === 'evaluated' ? o.newEffects : -1))).toEqual([
      1, 1, 1, 1, 1,
    ]);
  });

  it('a failed batch fails each of its requests, and the next batch still runs', async () => {
    let calls = 0;
    const batcher = new EvaluationBatcher((requests) => {
      calls += 1;
      if (calls === 1) return Promise.reject(new Error('connection lost'));
      return Promise.resolve(
        new Map(requests.map((r) => [r.accountId, { status: 'not-found' } as const])),
      );
    }, 10);
    await expect(batcher.evaluate(req('x'))).rejects.toThrow('connection lost');
    await expect(batcher.evaluate(req('y'))).resolves.toEqual({ status: 'not-found' });
  });

  it('an account missing from the batch outcome is an error, not a silent success', async () => {
    const batcher = new EvaluationBatcher(() => Promise.resolve(new Map()), 10);
    await expect(batcher.evaluate(req('z'))).rejects.toThrow('no outcome for account z');
  });
});
