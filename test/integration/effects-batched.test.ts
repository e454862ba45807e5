import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  claimEffectBatched,
  claimEffects,
  settleOutboxBatched,
  settleOutboxRows,
  type Settlement,
} from '../../src/adapters/db/outbox-store';
import { startHarness, waitFor, type Harness } from '../support/daemon';

/**
 * Control-plane effects in batches (real PostgreSQL, Redis and the control plane of test/support
 * on loopback): concurrent effect jobs claim and settle through coalesced statements, each effect
 * is called once and recorded once, and a fenced-off holder records nothing even when its settle
 * shares a statement with rightful ones.
 */

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.stop();
});

let seq = 0;

/** `n` accounts, each with a streaming service under an operator's hold; returns their ids. */
async function heldAccounts(n: number): Promise<string[]> {
  seq += 1;
  const tag = `eb${seq}-${Math.random().toString(36).slice(2, 7)}`;
  const ids = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
  await h.t.raw`
    insert into accounts (id, currency, available_balance_minor, time_zone)
    select unnest(${ids}::text[]), 'USD', 1000000, 'UTC'`;
  await h.t.raw`
    insert into services (id, account_id, kind, status, operator_hold)
    select id || '-streaming', id, 'streaming', 'suspended', true
      from unnest(${ids}::text[]) as id`;
  return ids;
}

const keyOf = (id: string) => `suspend-batch-v1-${id}-1`;

/** One suspend row per account, in `status` (the relay leaves them dispatched). */
async function effectRows(ids: readonly string[], status: 'pending' | 'dispatched') {
  await h.t.raw`
    insert into outbox (idempotency_key, kind, account_id, payload, status, attempts)
    select 'suspend-batch-v1-' || id || '-1', 'control-plane', id,
           jsonb_build_object('op', 'suspend', 'serviceId', id || '-streaming', 'episodeSeq', 1),
           ${status}, ${status === 'dispatched' ? 1 : 0}
      from unnest(${ids}::text[]) as id`;
  return ids.map(keyOf);
}

async function rows(keys: readonly string[]) {
  return h.t.raw<{ key: string; status: string; claim_token: string | null }[]>`
    select idempotency_key as key, status, claim_token from outbox
     where idempotency_key = any(${keys}::text[]) order by idempotency_key`;
}

async function eventsByKey(keys: readonly string[]) {
  const found = await h.t.raw<{ key: string; kind: string }[]>`
    select detail ->> 'key' as key, kind from enforcement_events
     where detail ->> 'key' = any(${keys}::text[]) order by id`;
  const out = new Map<string, string[]>();
  for (const e of found) out.set(e.key, [...(out.get(e.key) ?? []), e.kind]);
  return out;
}

const applied = (accountId: string, key: string, token: string): Settlement => ({
  status: 'done',
  reason: null,
  claimToken: token,
  event: {
    accountId,
    kind: 'effect-applied',
    episodeSeq: 1,
    detail: { op: 'suspend', key },
    idempotencyKey: `${key}-applied`,
  },
});

describe('control-plane effects in batches', () => {
  it('concurrent effect jobs are each applied once at the control plane, with one recorded outcome', async () => {
    const ids = await heldAccounts(40);
    // Pending: the relay dispatches all of them in one pass, so their jobs run side by side
    // (EFFECTS_CONCURRENCY 64) and their claims and settles share statements.
    const keys = await effectRows(ids, 'pending');
    await waitFor(
      async () => (await rows(keys)).every((r) => r.status === 'done'),
      20_000,
      'every effect done',
    );
    const final = await rows(keys);
    expect(final).toHaveLength(40);
    for (const r of final) expect(r).toMatchObject({ status: 'done', claim_token: null });
    const events = await eventsByKey(keys);
    for (const key of keys) {
      expect(events.get(key)).toEqual(['effect-applied']);
      const calls = h.cp.requests.filter((c) => c.idempotencyKey === key);
      expect(calls).toHaveLength(1);
      expect(calls[0]?.headerKey).toBe(key);
    }
    expect(h.cp.repeats).toBe(0);
  });

  it('one claim statement answers each request its own row: claimed, held, finished or missing', async () => {
    const ids = await heldAccounts(3);
    const [a, b, c] = await effectRows(ids, 'dispatched');
    const db = h.daemon.ctx.db;
    // b is held by someone else; c is finished.
    expect(
      (await claimEffects(db, [{ key: b!, claimToken: 'other', leaseMs: 60_000 }]))[0],
    ).toMatchObject({
      kind: 'claimed',
    });
    await h.t.raw`update outbox set status = 'done' where idempotency_key = ${c!}`;
    const answers = await claimEffects(db, [
      { key: a!, claimToken: 'tok-a', leaseMs: 60_000 },
      { key: 'no-such-key', claimToken: 'tok-x', leaseMs: 60_000 },
      { key: b!, claimToken: 'tok-b', leaseMs: 60_000 },
      { key: c!, claimToken: 'tok-c', leaseMs: 60_000 },
    ]);
    expect(answers.map((x) => x.kind)).toEqual(['claimed', 'missing', 'busy', 'finished']);
    expect(answers[0]).toMatchObject({
      kind: 'claimed',
      entry: { key: a, kind: 'control-plane', accountId: ids[0], status: 'dispatched' },
      target: { service: { status: 'suspended', operatorHold: true }, instanceReleased: null },
    });
    expect(answers[2]).toMatchObject({ kind: 'busy', reason: 'held' });
    expect(answers[3]).toMatchObject({ kind: 'finished', status: 'done' });
    // Claiming again with the same token (a statement retried after a lost answer) keeps it.
    expect(
      (await claimEffects(db, [{ key: a!, claimToken: 'tok-a', leaseMs: 60_000 }]))[0]?.kind,
    ).toBe('claimed');
    const held = await rows([a!, b!]);
    expect(held.map((r) => r.claim_token)).toEqual(['tok-a', 'other']);
  });

  it('a fenced-off late holder records nothing, while the batched settle records the rightful holders', async () => {
    const ids = await heldAccounts(3);
    const keys = await effectRows(ids, 'dispatched');
    const [x, y, z] = keys as [string, string, string];
    const db = h.daemon.ctx.db;
    const expire = (key: string) =>
      h.t.raw`update outbox set claim_expires_at = now() - interval '1 second'
               where idempotency_key = ${key}`;
    // A claims x and stalls past its lease; B takes x over. y and z are claimed normally.
    expect(
      (await claimEffectBatched(db, { key: x, claimToken: 'late-a', leaseMs: 60_000 })).kind,
    ).toBe('claimed');
    await expire(x);
    const claims = await Promise.all([
      claimEffectBatched(db, { key: x, claimToken: 'holder-b', leaseMs: 60_000 }),
      claimEffectBatched(db, { key: y, claimToken: 'holder-y', leaseMs: 60_000 }),
      claimEffectBatched(db, { key: z, claimToken: 'holder-z', leaseMs: 60_000 }),
    ]);
    expect(claims.map((c) => c.kind)).toEqual(['claimed', 'claimed', 'claimed']);

    // One statement: A's late outcome for x beside the rightful outcomes of y and z.
    const moved = await settleOutboxRows(db, [
      {
        key: x,
        settlement: { ...applied(ids[0]!, x, 'late-a'), status: 'failed', reason: 'late holder' },
      },
      { key: y, settlement: applied(ids[1]!, y, 'holder-y') },
      { key: z, settlement: applied(ids[2]!, z, 'holder-z') },
    ]);
    expect(moved).toEqual([false, true, true]);
    expect(await rows(keys)).toEqual([
      { key: x, status: 'dispatched', claim_token: 'holder-b' },
      { key: y, status: 'done', claim_token: null },
      { key: z, status: 'done', claim_token: null },
    ]);
    let events = await eventsByKey(keys);
    expect(events.get(x)).toBeUndefined();
    expect(events.get(y)).toEqual(['effect-applied']);

    // Through the coalescer, A's repeat and B's outcome for x at the same moment: never in one
    // statement (same key), A records nothing, B records its outcome once.
    const [late, rightful, again] = await Promise.all([
      settleOutboxBatched(db, x, {
        ...applied(ids[0]!, x, 'late-a'),
        status: 'failed',
        reason: 'late',
      }),
      settleOutboxBatched(db, x, applied(ids[0]!, x, 'holder-b')),
      settleOutboxBatched(db, y, applied(ids[1]!, y, 'holder-y')),
    ]);
    expect([late, rightful, again]).toEqual([false, true, false]);
    expect((await rows([x]))[0]).toEqual({ key: x, status: 'done', claim_token: null });
    events = await eventsByKey(keys);
    expect(events.get(x)).toEqual(['effect-applied']);
    expect(events.get(y)).toEqual(['effect-applied']);
    expect(events.get(z)).toEqual(['effect-applied']);
  });

  it('one bad settlement in a batch fails alone; the others are recorded', async () => {
    const ids = await heldAccounts(2);
    const [good, bad] = (await effectRows(ids, 'dispatched')) as [string, string];
    const db = h.daemon.ctx.db;
    await Promise.all([
      claimEffectBatched(db, { key: good, claimToken: 'tok-good', leaseMs: 60_000 }),
      claimEffectBatched(db, { key: bad, claimToken: 'tok-bad', leaseMs: 60_000 }),
    ]);
    // An event kind the enforcement_events CHECK refuses: the batch's statement fails, each
    // settle is then tried alone.
    const results = await Promise.allSettled([
      settleOutboxBatched(db, good, applied(ids[0]!, good, 'tok-good')),
      settleOutboxBatched(db, bad, {
        ...applied(ids[1]!, bad, 'tok-bad'),
        event: { accountId: ids[1]!, kind: 'Not A Code!', detail: { key: bad } },
      }),
    ]);
    expect(results[0]).toEqual({ status: 'fulfilled', value: true });
    expect(results[1]?.status).toBe('rejected');
    expect(await rows([good, bad])).toEqual([
      { key: good, status: 'done', claim_token: null },
      { key: bad, status: 'dispatched', claim_token: 'tok-bad' },
    ]);
  });
});
