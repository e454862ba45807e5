/* eslint-disable @typescript-eslint/no-unsafe-member-access --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setEnforcementMode } from '../../src/adapters/db/control-store';
import { loadConfig } from '../../src/config';
import {
  asOps,
  asViewer,
  seedOverdue,
  startApiHarness,
  type ApiHarness,
} from '../support/api-harness';
import { waitFor, type Harness } from '../support/daemon';

let api: ApiHarness;
let h: Harness;
const call: ApiHarness['call'] = (opts) => api.call(opts);
const count = async (query: Promise<{ n: string }[]>) => Number((await query)[0]?.n);

beforeAll(async () => {
  api = await startApiHarness({ ENFORCEMENT_MODE: 'shadow' });
  h = api.h;
});

afterAll(async () => {
  await api?.stop();
});

describe('enforcement mode', () => {
  it('ENFORCEMENT_MODE=shadow at start: the mode is shadow, set by config', async () => {
    const res = await call({ method: 'GET', url: '/v1/enforcement-mode', headers: asViewer });
    expect(res.status).toBe(200);
    expect(res.body.mode).toBe('shadow');
    expect(res.body.source).toBe('config');
    expect(res.body.changes[0]).toMatchObject({
      kind: 'enforcement-mode-changed',
      actor: 'config',
      detail: { from: 'enforce', to: 'shadow' },
    });
  });

  it('shadow: no call, no message, no state change; every would-be action is recorded and reported', async () => {
    await seedOverdue(h.t.db, 'shadow1');
    await seedOverdue(h.t.db, 'shadow2');
    await waitFor(
      async () =>
        (await count(h.t.raw`select count(distinct account_id) as n from enforcement_events
                              where kind = 'shadow-decision'
                                and detail ->> 'decision' = 'suspend-services'`)) === 2,
      30_000,
      'both accounts evaluated in shadow mode',
    );
    // A scan by hand evaluates them again: the same would-be actions, not recorded twice.
    const before = await count(
      h.t.raw`select count(*) as n from enforcement_events where kind = 'shadow-decision'`,
    );
    await h.daemon.ctx.queues.add('balance-scan', { origin: 'operator:test' });
    await waitFor(
      async () =>
        (await h.daemon.ctx.queues.byName.scan.getJobCounts('completed')).completed! >= 1 &&
        (await h.daemon.ctx.queues.byName.evaluate.getJobCounts('active', 'waiting')).waiting === 0,
      30_000,
      'the scan and its evaluations done',
    );
    await new Promise((r) => setTimeout(r, 1_000));
    expect(
      await count(
        h.t.raw`select count(*) as n from enforcement_events where kind = 'shadow-decision'`,
      ),
    ).toBe(before);

    expect(h.cp.requests).toHaveLength(0);
    expect(await count(h.t.raw`select count(*) as n from notifications`)).toBe(0);
    expect(await count(h.t.raw`select count(*) as n from outbox`)).toBe(0);
    const states = await h.t.raw<{ enforcement_state: string; status: string }[]>`
      select a.enforcement_state, s.status from accounts a join services s on s.account_id = a.id
       where a.id like 'shadow%'`;
    expect(states).toEqual([
      { enforcement_state: 'active', status: 'active' },
      { enforcement_state: 'active', status: 'active' },
    ]);
    const events = await h.t.raw<{ kind: string }[]>`
      select distinct kind from enforcement_events where account_id like 'shadow%'`;
    expect(events.map((e) => e.kind)).toEqual(['shadow-decision']);

    const report = await call({
      method: 'GET',
      url: '/v1/shadow-report?since=1h',
      headers: asViewer,
    });
    expect(report.status).toBe(200);
    expect(report.body.mode).toBe('shadow');
    const kinds = report.body.kinds as { decision: string; accounts: number; sample: string[] }[];
    const suspend = kinds.find((k) => k.decision === 'suspend-services');
    expect(suspend?.accounts).toBe(2);
    expect([...(suspend?.sample ?? [])].sort()).toEqual(['shadow1', 'shadow2']);
  });

  it(
    'an effect queued before the switch waits in shadow and goes out once after enforce',
    { timeout: 90_000 },
    async () => {
      // An operator's hold queues a control-plane effect even now; shadow holds it at the claim.
      const hold = await call({
        method: 'POST',
        url: '/v1/services/shadow1-live/hold',
        headers: asOps,
        payload: { confirmAccountId: 'shadow1', reason: 'abuse report' },
      });
      expect(hold.status).toBe(202);
      await new Promise((r) => setTimeout(r, 3_000));
      expect(h.cp.requests).toHaveLength(0);
      const [row] = await h.t.raw<{ status: string }[]>`
      select status from outbox where kind = 'control-plane'`;
      expect(['pending', 'dispatched']).toContain(row?.status);

      const res = await call({
        method: 'POST',
        url: '/v1/enforcement-mode',
        headers: asOps,
        payload: { mode: 'enforce', reason: 'shadow report reviewed' },
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        changed: true,
        mode: 'enforce',
        source: 'operator',
        changedBy: 'operator:ops',
        freshScan: true,
      });
      // Acting afresh on the state now: both accounts suspended once (shadow1 by the operator's
      // hold and the overdue suspension, on one service: one call), nothing replayed twice.
      await waitFor(
        async () =>
          (await count(h.t.raw`select count(*) as n from services
                              where account_id like 'shadow%' and status = 'suspended'`)) === 2,
        30_000,
        'both services suspended after enforce',
      );
      await waitFor(
        async () =>
          (await count(h.t.raw`select count(*) as n from outbox
                              where kind = 'control-plane'
                                and status in ('pending', 'dispatched')`)) === 0,
        30_000,
        'every control-plane effect finished',
      );
      const suspends = h.cp.calls.filter((c) => c.op === 'suspend');
      expect(suspends.map((c) => c.serviceId).sort()).toEqual(
        [...new Set(suspends.map((c) => c.serviceId))].sort(),
      );
      expect(new Set(suspends.map((c) => c.serviceId))).toEqual(
        new Set(['shadow1-live', 'shadow2-live']),
      );
      expect(h.cp.repeats).toBe(0);
      const [change] = await h.t.raw<{ actor: string; reason: string; detail: unknown }[]>`
      select actor, reason, detail from control_events order by id desc limit 1`;
      expect(change).toMatchObject({
        actor: 'operator:ops',
        reason: 'shadow report reviewed',
        detail: { from: 'shadow', to: 'enforce' },
      });
    },
  );

  it('off: scans skip and evaluations read and write nothing', async () => {
    expect(
      (
        await call({
          method: 'POST',
          url: '/v1/enforcement-mode',
          headers: asOps,
          payload: { mode: 'off', reason: 'billing incident' },
        })
      ).status,
    ).toBe(200);
    await seedOverdue(h.t.db, 'off1');
    const scan = await h.daemon.ctx.queues.add('balance-scan', { origin: 'operator:test' });
    const evaluation = await h.daemon.ctx.queues.add('evaluate-account', {
      accountId: 'off1',
      origin: 'operator:test',
    });
    const done = async (id: string | undefined, queue: 'scan' | 'evaluate') =>
      waitFor(
        async () => {
          const q = h.daemon.ctx.queues.byName[queue];
          if ((await q.getJobState(id ?? '')) !== 'completed') return undefined;
          // Read once completed: a job read before may predate its return value.
          return q.getJob(id ?? '');
        },
        20_000,
        `${queue} job done`,
      );
    expect((await done(scan.id, 'scan')).returnvalue).toEqual({
      skipped: 'enforcement mode is off',
    });
    expect((await done(evaluation.id, 'evaluate')).returnvalue).toEqual({ status: 'off' });
    expect(
      await count(h.t.raw`select count(*) as n from enforcement_events where account_id = 'off1'`),
    ).toBe(0);
    const [acct] = await h.t.raw<{ enforcement_state: string }[]>`
      select enforcement_state from accounts where id = 'off1'`;
    expect(acct?.enforcement_state).toBe('active');
  });

  it('two operators changing the mode at once: the stored mode is the last recorded change', async () => {
    const modes = ['shadow', 'off', 'enforce', 'shadow', 'off', 'shadow', 'enforce', 'off'];
    const results = await Promise.all(
      modes.map((mode, i) =>
        setEnforcementMode(h.t.db, { mode: mode as 'off', actor: `operator:op${i}`, reason: 'x' }),
      ),
    );
    expect(results.every((r) => r.kind !== 'conflict')).toBe(true);
    const events = await h.t.raw<{ detail: { from: string; to: string; version: number } }[]>`
      select detail from control_events order by id`;
    // Each recorded change starts from the one before it: no lost update.
    for (let i = 1; i < events.length; i += 1) {
      expect(events[i]?.detail.from).toBe(events[i - 1]?.detail.to);
      expect(Number(events[i]?.detail.version)).toBe(Number(events[i - 1]?.detail.version) + 1);
    }
    const state = await call({ method: 'GET', url: '/v1/enforcement-mode', headers: asViewer });
    expect(state.body.mode).toBe(events[events.length - 1]?.detail.to);
    // With expectedVersion, the slower of two operators who read the same version gets 409.
    const version = state.body.version as number;
    const target = state.body.mode === 'shadow' ? 'off' : 'shadow';
    const first = await call({
      method: 'POST',
      url: '/v1/enforcement-mode',
      headers: asOps,
      payload: { mode: target, reason: 'first', expectedVersion: version },
    });
    const second = await call({
      method: 'POST',
      url: '/v1/enforcement-mode',
      headers: asOps,
      payload: { mode: 'enforce', reason: 'second', expectedVersion: version },
    });
    expect(first.status).toBe(200);
    expect(second.status).toBe(409);
  });

  it('bad input is refused with the field named; the viewer cannot change the mode', async () => {
    const bad = async (payload: unknown) =>
      call({
        method: 'POST',
        url: '/v1/enforcement-mode',
        headers: asOps,
        payload: payload as object,
      });
    const unknown = await bad({ mode: 'panic', reason: 'x' });
    expect(unknown.status).toBe(400);
    expect(JSON.stringify(unknown.body)).toContain('mode');
    const noReason = await bad({ mode: 'off' });
    expect(noReason.status).toBe(400);
    expect(JSON.stringify(noReason.body)).toContain('reason');
    const blank = await bad({ mode: 'off', reason: '' });
    expect(blank.status).toBe(400);
    expect(JSON.stringify(blank.body)).toContain('reason');
    const viewer = await call({
      method: 'POST',
      url: '/v1/enforcement-mode',
      headers: asViewer,
      payload: { mode: 'off', reason: 'x' },
    });
    expect(viewer.status).toBe(403);
    const since = await call({
      method: 'GET',
      url: '/v1/shadow-report?since=yesterday',
      headers: asViewer,
    });
    expect(since.status).toBe(400);
    expect(JSON.stringify(since.body)).toContain('since');
    const config = loadConfig({ ENFORCEMENT_MODE: 'panic' });
    expect(config.ok).toBe(false);
    if (!config.ok) expect(config.problems.map((p) => p.name)).toEqual(['ENFORCEMENT_MODE']);
  });
});
