/* eslint-disable @typescript-eslint/no-unsafe-member-access --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  asOps,
  asViewer,
  seedOverdue,
  startApiHarness,
  type ApiHarness,
} from '../support/api-harness';
import { waitFor } from '../support/daemon';

let api: ApiHarness;
const call: ApiHarness['call'] = (opts) => api.call(opts);
const setOwed = (id: string, owed: boolean) => seedOverdue(api.h.t.db, id, owed);
const callsFor = (op: string, serviceId: string) =>
  api.h.cp.calls.filter((c) => c.op === op && c.serviceId === serviceId).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  api = await startApiHarness();
});

afterAll(async () => {
  await api?.stop();
});

describe('pause switch', () => {
  it('a paused suspension goes out after the pause and not before; resumes go out at once', async () => {
    // Suspended before the pause: it pays during the pause.
    await setOwed('pz-early', true);
    await waitFor(() => callsFor('suspend', 'pz-early-live') === 1, 30_000, 'pz-early suspended');

    const paused = await call({
      method: 'POST',
      url: '/v1/pauses',
      headers: asOps,
      payload: { kind: 'suspensions', reason: 'bill run under review' },
    });
    expect(paused.status).toBe(201);
    expect(paused.body.paused).toBe(true);

    // Overdue during the pause: decided, its suspension held at the claim.
    await setOwed('pz-late', true);
    // Overdue during the pause and paid during it too: its suspension is held, its resume is not
    // (and must not wait behind the held suspension of the same service).
    await setOwed('pz-both', true);
    await waitFor(
      async () => {
        const rows = await api.h.t.raw<{ n: string }[]>`
          select count(*) as n from outbox
           where kind = 'control-plane' and payload ->> 'op' = 'suspend'
             and payload ->> 'serviceId' in ('pz-late-live', 'pz-both-live')`;
        return Number(rows[0]?.n) === 2;
      },
      30_000,
      'both suspensions decided',
    );
    await setOwed('pz-early', false);
    await setOwed('pz-both', false);
    await waitFor(() => callsFor('resume', 'pz-early-live') === 1, 15_000, 'pz-early resumed');
    await waitFor(() => callsFor('resume', 'pz-both-live') === 1, 15_000, 'pz-both resumed');
    await sleep(2_000);
    expect(callsFor('suspend', 'pz-late-live')).toBe(0);
    expect(callsFor('suspend', 'pz-both-live')).toBe(0);

    const lifted = await call({
      method: 'DELETE',
      url: '/v1/pauses/suspensions',
      headers: asOps,
      payload: { reason: 'reviewed: the bill run was right' },
    });
    expect(lifted.status).toBe(200);
    expect(lifted.body).toMatchObject({ lifted: true, pauses: [] });
    await waitFor(() => callsFor('suspend', 'pz-late-live') === 1, 20_000, 'pz-late suspended');
    // pz-both paid: its held suspension is re-checked and superseded, never sent.
    await waitFor(
      async () => {
        const rows = await api.h.t.raw<{ status: string }[]>`
          select status from outbox
           where kind = 'control-plane' and payload ->> 'op' = 'suspend'
             and payload ->> 'serviceId' = 'pz-both-live'`;
        return rows[0]?.status === 'superseded';
      },
      20_000,
      "pz-both's held suspension superseded",
    );
    expect(callsFor('suspend', 'pz-both-live')).toBe(0);
    expect(api.h.cp.repeats).toBe(0);
    const events = await api.h.t.raw<{ kind: string; actor: string; reason: string }[]>`
      select kind, actor, reason from control_events order by id`;
    expect(events).toEqual([
      { kind: 'pause-set', actor: 'operator:ops', reason: 'bill run under review' },
      { kind: 'pause-lifted', actor: 'operator:ops', reason: 'reviewed: the bill run was right' },
    ]);
  }, 120_000);

  it('resumes cannot be paused; a pause needs a reason; the viewer cannot pause', async () => {
    const resumes = await call({
      method: 'POST',
      url: '/v1/pauses',
      headers: asOps,
      payload: { kind: 'resumes', reason: 'x' },
    });
    expect(resumes.status).toBe(400);
    expect(JSON.stringify(resumes.body)).toContain('resumes are never paused');
    const unknown = await call({
      method: 'POST',
      url: '/v1/pauses',
      headers: asOps,
      payload: { kind: 'everything', reason: 'x' },
    });
    expect(unknown.status).toBe(400);
    expect(JSON.stringify(unknown.body)).toContain('kind');
    const noReason = await call({
      method: 'POST',
      url: '/v1/pauses',
      headers: asOps,
      payload: { kind: 'messages' },
    });
    expect(noReason.status).toBe(400);
    expect(JSON.stringify(noReason.body)).toContain('reason');
    const viewer = await call({
      method: 'POST',
      url: '/v1/pauses',
      headers: asViewer,
      payload: { kind: 'messages', reason: 'x' },
    });
    expect(viewer.status).toBe(403);
    const list = await call({ method: 'GET', url: '/v1/pauses', headers: asViewer });
    expect(list).toMatchObject({ status: 200, body: { pauses: [] } });
  });
});
