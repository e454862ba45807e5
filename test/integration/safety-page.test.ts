import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  asOps,
  asViewer,
  seedOverdue,
  startApiHarness,
  type ApiHarness,
} from '../support/api-harness';
import { waitFor } from '../support/daemon';

/** The safety valves' page at /admin/safety: what each account sees, and its forms. */

let api: ApiHarness;
const form = { 'content-type': 'application/x-www-form-urlencoded' };

beforeAll(async () => {
  api = await startApiHarness({ SUSPENSION_BREAKER: '1/10m' });
});
afterAll(async () => {
  await api?.stop();
});

async function get(headers: Record<string, string>, url = '/admin/safety') {
  const res = await api.app.inject({ method: 'GET', url, headers });
  return { status: res.statusCode, html: res.body, headers: res.headers };
}

async function post(path: string, body: string, headers = asOps) {
  return api.app.inject({
    method: 'POST',
    url: `/admin/safety/${path}`,
    headers: { ...headers, ...form },
    payload: body,
  });
}

describe('safety valves page', () => {
  it('the viewer reads the mode, the pauses and the breaker, with no form; its posts are refused', async () => {
    const page = await get(asViewer);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("form-action 'self'");
    expect(page.html).toContain('Enforcement mode');
    expect(page.html).toContain('Mass-suspension breaker: closed');
    expect(page.html).not.toContain('<form');
    expect((await post('pause', 'kind=messages&reason=x', asViewer)).statusCode).toBe(403);
    expect((await get({})).status).toBe(401);
  });

  it('an operator pauses and lifts from the page; a pause without a reason is refused by name', async () => {
    expect((await get(asOps)).html).toContain('<form');
    const refused = await post('pause', 'kind=messages&reason=');
    expect(refused.statusCode).toBe(400);
    expect(refused.body).toContain('reason: must say why');
    const resumes = await post('pause', 'kind=resumes&reason=never');
    expect(resumes.statusCode).toBe(400);
    expect(resumes.body).toContain('resumes are never paused');

    const paused = await post('pause', 'kind=messages&reason=provider+incident');
    expect(paused.statusCode).toBe(303);
    expect(paused.headers.location).toContain('done=');
    const after = await get(asOps, String(paused.headers.location));
    expect(after.html).toContain('messages paused.');
    expect(after.html).toContain('provider incident');
    const [row] = await api.h.t.raw<{ paused_by: string }[]>`
      select paused_by from control_pauses where kind = 'messages'`;
    expect(row?.paused_by).toBe('operator:ops');
    expect((await post('unpause', 'kind=messages&reason=')).statusCode).toBe(303);
    expect(await api.h.t.raw`select 1 from control_pauses`).toHaveLength(0);
  });

  it('lists held decisions with checkboxes and rejects the selected one', async () => {
    await seedOverdue(api.h.t.db, 'page-a');
    await seedOverdue(api.h.t.db, 'page-b');
    const held = await waitFor(
      async () => {
        const rows = await api.h.t.raw<{ decision_key: string }[]>`
          select decision_key from breaker_ledger where status = 'held'`;
        return rows[0]?.decision_key;
      },
      20_000,
      'a held suspension',
    );
    const page = await get(asOps);
    expect(page.html).toContain('TRIPPED');
    expect(page.html).toContain(`name="keys" value="${held}"`);
    const none = await post('breaker', 'action=reject&scope=selected&reason=x');
    expect(none.statusCode).toBe(400);
    expect(none.body).toContain('select at least one');
    const noReason = await post('breaker', `action=reject&scope=selected&keys=${held}`);
    expect(noReason.statusCode).toBe(400);
    const done = await post(
      'breaker',
      `action=reject&scope=selected&keys=${held}&reason=wrong+bill+run`,
    );
    expect(done.statusCode).toBe(303);
    const [row] = await api.h.t.raw<{ status: string; reason: string; settled_by: string }[]>`
      select status, reason, settled_by from breaker_ledger where decision_key = ${held}`;
    expect(row).toEqual({
      status: 'rejected',
      reason: 'wrong bill run',
      settled_by: 'operator:ops',
    });
    expect((await post('breaker-reset', 'reason=over')).statusCode).toBe(303);
    expect((await get(asOps)).html).toContain('Mass-suspension breaker: closed');
  });
});
