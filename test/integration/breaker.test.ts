/* eslint-disable @typescript-eslint/no-unsafe-member-access --
   Response bodies are parsed JSON, checked field by field with expect(). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../../src/daemon';
import { asOps, asViewer, startApiHarness, type ApiHarness } from '../support/api-harness';
import { waitFor } from '../support/daemon';
import { createSmtpSink, type SmtpSink } from '../support/smtp-sink';

/**
 * The mass-suspension breaker end to end: two daemons (each with its own database pool and
 * BullMQ workers) on the real PostgreSQL and Redis, the control-plane fake on loopback, and the
 * operators' alert mail through a real SMTP server on loopback.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DAY = 86_400_000;

interface Setup {
  api: ApiHarness;
  second: Daemon;
  sink: SmtpSink;
}

async function setUp(env: Record<string, string>): Promise<Setup> {
  const sink = await createSmtpSink();
  const api = await startApiHarness({
    SMTP_URL: sink.url,
    MAIL_FROM: 'Billing <billing@example.com>',
    OPERATOR_EMAILS: 'oncall@example.com',
    ...env,
  });
  // The second daemon opens its own pool on the same database.
  const second = await api.h.start({ database: undefined });
  return { api, second, sink };
}

async function tearDown(s: Setup | undefined): Promise<void> {
  await s?.second.close().catch(() => undefined);
  await s?.api.stop();
  await s?.sink.close();
}

/** `n` accounts `<prefix>-<i>` with one live service and a bill ten days overdue, no protection. */
async function overdueAtOnce(api: ApiHarness, prefix: string, n: number): Promise<void> {
  const sql = api.h.t.raw;
  const due = new Date(Date.now() - 10 * DAY);
  await sql.begin(async (tx) => {
    await tx`
      insert into accounts (id, currency, available_balance_minor, time_zone, locale, email,
                            protection_custom, protection_amount_minor)
      select ${prefix} || '-' || g, 'CNY', -50000, 'Asia/Shanghai', 'en',
             ${prefix} || '-' || g || '@example.com', true, 0
        from generate_series(1, ${n}::int) g`;
    await tx`
      insert into services (id, account_id, kind)
      select ${prefix} || '-' || g || '-live', ${prefix} || '-' || g, 'streaming'
        from generate_series(1, ${n}::int) g`;
    await tx`
      insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at)
      select ${prefix} || '-' || g || '-bill', ${prefix} || '-' || g, 'live', 50000, 0,
             ${new Date(due.getTime() - 10 * DAY)}, ${due}
        from generate_series(1, ${n}::int) g`;
  });
}

const alertMails = (sink: SmtpSink) =>
  sink.messages.filter((m) => (m.subject ?? '').includes('breaker-tripped'));

async function ledger(api: ApiHarness, prefix: string) {
  const rows = await api.h.t.raw<{ status: string; n: string }[]>`
    select status, count(*) as n from breaker_ledger
     where account_id like ${`${prefix}-%`} group by status`;
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

describe('mass-suspension breaker at 100/10m,1%, two daemons', () => {
  let s: Setup;
  const suspends = () =>
    s.api.h.cp.calls.filter((c) => c.op === 'suspend' && c.accountId.startsWith('storm-'));

  beforeAll(async () => {
    s = await setUp({ SUSPENSION_BREAKER: '100/10m,1%' });
  });
  afterAll(async () => {
    await tearDown(s);
  });

  it('300 accounts overdue at once: exactly 100 suspended, 200 held, one operator alert; approval applies the rest once', async () => {
    await overdueAtOnce(s.api, 'storm', 300);
    await waitFor(
      async () => (await ledger(s.api, 'storm')).held === 200,
      60_000,
      '200 suspensions held',
    );
    await waitFor(() => suspends().length === 100, 30_000, '100 suspensions sent');
    // Both daemons evaluate again: nothing changes.
    await Promise.all([
      s.api.h.daemon.ctx.queues.add('balance-scan', { origin: 'test' }),
      s.second.ctx.queues.add('balance-scan', { origin: 'test' }),
    ]);
    await sleep(3_000);
    expect(suspends()).toHaveLength(100);
    expect(await ledger(s.api, 'storm')).toEqual({ allowed: 100, held: 200 });

    // The held accounts are untouched: services running, no suspension notice queued.
    const [state] = await s.api.h.t.raw<{ suspended: string; notices: string }[]>`
      select (select count(*) from services
                where account_id like 'storm-%' and status = 'suspended') as suspended,
             (select count(*) from notifications
                where account_id like 'storm-%' and template = 'suspended') as notices`;
    expect(Number(state?.suspended)).toBe(100);
    expect(Number(state?.notices)).toBe(100);
    const [heldEvents] = await s.api.h.t.raw<{ n: string }[]>`
      select count(*) as n from enforcement_events
       where account_id like 'storm-%' and kind = 'held-by-breaker'`;
    expect(Number(heldEvents?.n)).toBe(200);

    // One operator alert, whichever daemon got there, even when both look again.
    await waitFor(() => alertMails(s.sink).length >= 1, 70_000, 'operator alert');
    s.api.h.daemon.ctx.breakerHeld?.();
    s.second.ctx.breakerHeld?.();
    await sleep(1_500);
    expect(alertMails(s.sink)).toHaveLength(1);
    expect(alertMails(s.sink)[0]?.text).toContain('held');
    const [tripped] = await s.api.h.t.raw<{ n: string }[]>`
      select count(*) as n from control_events where kind = 'breaker-tripped'`;
    expect(Number(tripped?.n)).toBe(1);

    const status = await s.api.call({ method: 'GET', url: '/v1/breaker', headers: asViewer });
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({
      enabled: true,
      tripped: true,
      limit: 100,
      heldCount: 200,
      admitted: 100,
    });
    expect(status.body.held).toHaveLength(100);
    expect(status.body.held[0]).toMatchObject({ kind: 'suspend' });

    const metrics = await s.api.app.inject({ method: 'GET', url: '/metrics', headers: asViewer });
    expect(metrics.body).toContain('overdue_safety_state{valve="breaker",value="tripped"} 1');
    expect(metrics.body).toContain('overdue_safety_state{valve="mode",value="enforce"} 1');
    expect(metrics.body).toContain('overdue_breaker_held 200');

    // The viewer can read but not act.
    const denied = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/approve',
      headers: asViewer,
      payload: { all: true },
    });
    expect(denied.status).toBe(403);

    const approved = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/approve',
      headers: asOps,
      payload: { all: true, reason: 'checked: the bill run is right' },
    });
    expect(approved.status).toBe(200);
    expect(approved.body.approved).toBe(200);
    await waitFor(() => suspends().length === 300, 60_000, 'the approved 200 suspended');
    await sleep(2_000);
    expect(suspends()).toHaveLength(300);
    expect(new Set(suspends().map((c) => c.serviceId)).size).toBe(300);
    expect(s.api.h.cp.requests.filter((c) => c.accountId.startsWith('storm-'))).toHaveLength(300);
    expect(await ledger(s.api, 'storm')).toEqual({ allowed: 100, approved: 200 });
    const [approvedEvents] = await s.api.h.t.raw<{ n: string }[]>`
      select count(*) as n from enforcement_events
       where account_id like 'storm-%' and kind = 'breaker-approved'`;
    expect(Number(approvedEvents?.n)).toBe(200);

    // Still tripped for new suspensions until reset.
    await overdueAtOnce(s.api, 'late', 1);
    await waitFor(async () => (await ledger(s.api, 'late')).held === 1, 20_000, 'late held');
    const reset = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/reset',
      headers: asOps,
      payload: { reason: 'incident over' },
    });
    expect(reset.status).toBe(200);
    expect(reset.body).toMatchObject({ reset: true, breaker: { tripped: false, admitted: 0 } });
  }, 240_000);
});

describe('breaker: studio releases, rejection and bad input', () => {
  let s: Setup;
  const calls = (op: string, accountId: string) =>
    s.api.h.cp.calls.filter((c) => c.op === op && c.accountId === accountId);

  beforeAll(async () => {
    s = await setUp({
      SUSPENSION_BREAKER: '2/10m',
      STUDIO_RELEASE_DELAY: '8s',
      STUDIO_RELEASE_WARNING: '1s',
    });
  });
  afterAll(async () => {
    await tearDown(s);
  });

  it('holds studio releases while tripped; a rejected suspension is not carried out and stays rejected', async () => {
    const sql = s.api.h.t.raw;
    // A studio on a duration plan, suspended at once when overdue (admitted: 1 of 2).
    await sql`
      insert into accounts (id, currency, available_balance_minor, time_zone, locale, email)
      values ('studio-1', 'CNY', -50000, 'UTC', 'en', 'studio-1@example.com')`;
    await sql`insert into services (id, account_id, kind, plan_type)
              values ('studio-1-studio', 'studio-1', 'studio', 'duration')`;
    await sql`insert into studio_instances (id, account_id, service_id, name, streaming)
              values ('studio-1-inst', 'studio-1', 'studio-1-studio', 'Main stage', false)`;
    const due = new Date(Date.now() - 10 * DAY);
    await sql`
      insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at)
      values ('studio-1-bill', 'studio-1', 'studio', 9000, 0, ${new Date(due.getTime() - DAY)}, ${due})`;
    await waitFor(() => calls('suspend', 'studio-1').length === 1, 20_000, 'studio suspended');

    // Two more overdue accounts: the second suspension trips the breaker.
    await overdueAtOnce(s.api, 'two', 2);
    await waitFor(async () => (await ledger(s.api, 'two')).held === 1, 20_000, 'one held');
    expect(await ledger(s.api, 'two')).toEqual({ allowed: 1, held: 1 });

    // The studio's release falls due while the breaker is tripped: held, the instance kept.
    await waitFor(
      async () => (await ledger(s.api, 'studio')).held === 1,
      30_000,
      'studio release held',
    );
    await sleep(1_500);
    expect(calls('release', 'studio-1')).toHaveLength(0);
    const [inst] = await sql<{ released_at: Date | null }[]>`
      select released_at from studio_instances where id = 'studio-1-inst'`;
    expect(inst?.released_at).toBeNull();

    // Bad input is refused with the field named.
    const noReason = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/reject',
      headers: asOps,
      payload: { all: true },
    });
    expect(noReason.status).toBe(400);
    expect(JSON.stringify(noReason.body)).toContain('reason');
    const both = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/approve',
      headers: asOps,
      payload: { all: true, keys: ['x'] },
    });
    expect(both.status).toBe(400);
    expect(JSON.stringify(both.body)).toContain('keys');

    // Reject the held suspension: recorded with the reason, never carried out.
    const held = await s.api.call({ method: 'GET', url: '/v1/breaker', headers: asOps });
    const suspendKey = (held.body.held as { key: string; kind: string }[]).find(
      (h) => h.kind === 'suspend',
    )?.key;
    expect(suspendKey).toBeDefined();
    const rejected = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/reject',
      headers: asOps,
      payload: { keys: [suspendKey], reason: 'disputed invoice' },
    });
    expect(rejected.status).toBe(200);
    expect(rejected.body.rejected).toBe(1);
    const rejectedAccount = rejected.body.decisions[0].accountId as string;
    await s.api.h.daemon.ctx.queues.add('evaluate-account', {
      accountId: rejectedAccount,
      origin: 'test',
    });
    await sleep(2_000);
    expect(calls('suspend', rejectedAccount)).toHaveLength(0);
    const [ev] = await sql<{ detail: { reason: string }; actor: string }[]>`
      select detail, actor from enforcement_events
       where account_id = ${rejectedAccount} and kind = 'breaker-rejected'`;
    expect(ev).toMatchObject({ actor: 'operator:ops', detail: { reason: 'disputed invoice' } });
    expect(await ledger(s.api, 'two')).toEqual({ allowed: 1, rejected: 1 });

    // Approve the release: it goes out once, re-checked.
    const approved = await s.api.call({
      method: 'POST',
      url: '/v1/breaker/approve',
      headers: asOps,
      payload: { all: true },
    });
    expect(approved.body.approved).toBe(1);
    await waitFor(() => calls('release', 'studio-1').length === 1, 20_000, 'studio released');
    await sleep(1_000);
    expect(calls('release', 'studio-1')).toHaveLength(1);
  }, 120_000);
});
