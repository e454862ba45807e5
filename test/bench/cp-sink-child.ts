/**
 * The fake control plane of test/support (signed webhook on loopback) in a process of its own, so
 * that its CPU is not the daemon's nor the bench's. Started by phase-effects.ts with an IPC
 * channel: it sends `{ url, secret }` once listening, answers each `'stats'` message with the
 * counts below, and closes on `'stop'` (or when the parent goes away).
 */
import { startFakeControlPlane } from '../support/control-plane-server';

export interface SinkStats {
  /** Accepted calls, one per idempotency key. */
  calls: number;
  /** Every request received (accepted, repeated or refused). */
  requests: number;
  /** Accepted calls whose idempotency key had been accepted before. */
  repeats: number;
  badSignatures: number;
  /** Epoch ms of the first and last accepted call (0 when none). */
  firstAt: number;
  lastAt: number;
  /** Most requests seen for one idempotency key. */
  maxPerKey: number;
}

const send = (message: unknown) => process.send?.(message);

const cp = await startFakeControlPlane();
send({ url: cp.url, secret: cp.secret });

process.on('message', (message) => {
  if (message === 'stats') {
    const perKey = new Map<string, number>();
    for (const r of cp.requests)
      perKey.set(r.idempotencyKey, (perKey.get(r.idempotencyKey) ?? 0) + 1);
    const stats: SinkStats = {
      calls: cp.calls.length,
      requests: cp.requests.length,
      repeats: cp.repeats,
      badSignatures: cp.badSignatures,
      firstAt: cp.calls[0]?.at ?? 0,
      lastAt: cp.calls.at(-1)?.at ?? 0,
      maxPerKey: Math.max(0, ...perKey.values()),
    };
    send({ stats });
  } else if (message === 'stop') {
    void cp.close().finally(() => process.exit(0));
  }
});
process.on('disconnect', () => void cp.close().finally(() => process.exit(0)));
