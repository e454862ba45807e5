import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { forecast } from '../../src/http/console/forecast';
import {
  asOps,
  asViewer,
  seedOverdue,
  startApiHarness,
  type ApiHarness,
} from '../support/api-harness';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

/**
 * The console's remaining controls and figures: retrying a failed effect or message (console
 * form and /v1), the low-balance count of the overview, the forecast without decisions already
 * carried out, and the timeline in Chinese.
 */

let api: ApiHarness;
const form = { 'content-type': 'application/x-www-form-urlencoded' };

beforeAll(async () => {
  api = await startApiHarness();
});
afterAll(async () => {
  await api?.stop();
});

const page = async (url: string, headers: Record<string, string> = asOps) =>
  (await api.app.inject({ method: 'GET', url, headers })).body;

const postForm = (accountId: string, action: string, body: string, headers = asOps) =>
  api.app.inject({
    method: 'POST',
    url: `/admin/accounts/${accountId}/${action}`,
    headers: { ...headers, ...form },
    payload: body,
  });

async function outboxRow(key: string) {
  const [row] = await api.h.t.raw<{ status: string; last_error: string | null }[]>`
    select status, last_error from outbox where idempotency_key = ${key}`;
  return row;
}

/** Seeds `id` overdue with its suspension refused (400) by the control plane; the effect's key. */
async function refusedSuspension(id: string): Promise<string> {
  api.h.cp.script.push(400);
  await seedOverdue(api.h.t.db, id);
  return waitFor(
    async () => {
      const rows = await api.h.t.raw<{ idempotency_key: string; status: string }[]>`
        select idempotency_key, status from outbox
         where account_id = ${id} and kind = 'control-plane'`;
      return rows[0]?.status === 'failed' ? rows[0].idempotency_key : undefined;
    },
    10_000,
    'failed suspension',
  );
}

describe('retry of a failed effect', () => {
  it('a suspension the control plane refused (400) is retried from the overview, once, and shows on the timeline', async () => {
    const id = 'retry-effect-1';
    const key = await refusedSuspension(id);
    expect(api.h.cp.calls.filter((c) => c.idempotencyKey === key)).toHaveLength(0);

    // The overview lists it with a retry button for the operator, none for the viewer.
    const overview = await page('/admin');
    expect(overview).toContain(`<code>${key}</code>`);
    expect(overview).toContain(`action="/admin/accounts/${id}/retry"`);
    expect(await page('/admin', asViewer)).not.toContain('/retry"');
    const refused = await postForm(id, 'retry', `key=${key}&confirmAccountId=${id}`, asViewer);
    expect(refused.statusCode).toBe(403);
    expect((await outboxRow(key))?.status).toBe('failed');

    const done = await postForm(id, 'retry', `key=${key}&confirmAccountId=${id}`);
    expect(done.statusCode).toBe(303);
    await waitFor(
      async () => ((await outboxRow(key))?.status === 'done' ? true : undefined),
      10_000,
      'retried effect applied',
    );
    expect(api.h.cp.calls.filter((c) => c.idempotencyKey === key)).toHaveLength(1);
    const account = await page(String(done.headers.location));
    expect(account).toContain(`is pending again (was failed)`);
    expect(account).toContain(`retried effect <code>${key}</code> (was failed: `);
    expect(account).toContain('operator:ops');

    // Done now: a second retry is refused and changes nothing.
    const again = await api.call({
      method: 'POST',
      url: `/v1/outbox/${key}/retry`,
      headers: asOps,
      payload: { confirmAccountId: id },
    });
    expect(again.status).toBe(409);
    expect((again.body as { error: string }).error).toBe('not-failed');
    expect(api.h.cp.calls.filter((c) => c.idempotencyKey === key)).toHaveLength(1);
  });

  it('a retried suspension of an account that paid meanwhile becomes a no-op, not a call', async () => {
    const id = 'retry-effect-paid';
    const key = await refusedSuspension(id);
    await seedOverdue(api.h.t.db, id, false); // the bill is paid
    await waitFor(async () => {
      const [svc] = await api.h.t.raw<{ overdue_hold: boolean }[]>`
        select overdue_hold from services where id = ${`${id}-live`}`;
      return svc?.overdue_hold === false ? true : undefined;
    });
    const res = await api.call({
      method: 'POST',
      url: `/v1/outbox/${key}/retry`,
      headers: asOps,
      payload: { confirmAccountId: id, reason: 'control plane fixed' },
    });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      key,
      what: 'effect',
      accountId: id,
      previousStatus: 'failed',
    });
    const settled = await waitFor(
      async () => {
        const row = await outboxRow(key);
        return row?.status === 'superseded' ? row : undefined;
      },
      10_000,
      'retried effect superseded',
    );
    expect(settled.last_error).toContain('paid');
    expect(api.h.cp.calls.filter((c) => c.idempotencyKey === key)).toHaveLength(0);
  });

  it('unknown keys, other accounts and timer rows are refused', async () => {
    const call = (key: string, confirmAccountId: string) =>
      api.call({
        method: 'POST',
        url: `/v1/outbox/${encodeURIComponent(key)}/retry`,
        headers: asOps,
        payload: { confirmAccountId },
      });
    expect((await call('no-such-key', 'x')).status).toBe(404);
    const [timer] = await api.h.t.raw<{ idempotency_key: string; account_id: string }[]>`
      insert into outbox (idempotency_key, kind, account_id, payload, status)
      values ('wake-retry-test', 'wake', 'retry-effect-1', '{}'::jsonb, 'failed')
      returning idempotency_key, account_id`;
    expect((await call('wake-retry-test', 'someone-else')).status).toBe(400);
    const notRetryable = await call(timer?.idempotency_key ?? '', timer?.account_id ?? '');
    expect(notRetryable.status).toBe(409);
    expect((notRetryable.body as { error: string }).error).toBe('not-retryable');
    expect((await call('a:b', 'x')).status).toBe(400);
  });
});

describe('retry of a failed message (real SMTP sink and SMS API on loopback)', () => {
  let n: ApiHarness<NotifyHarness>;
  beforeAll(async () => {
    n = await startApiHarness({}, {}, startNotifyHarness);
  });
  afterAll(async () => {
    await n?.stop();
  });

  const retry = (key: string, accountId: string) =>
    n.call({
      method: 'POST',
      url: `/v1/outbox/${key}/retry`,
      headers: asOps,
      payload: { confirmAccountId: accountId },
    });

  /**
   * Seeds `id` overdue with its next email refused 550 by the sink; the failed message's key.
   * `smsToo` false: the account takes no routine SMS, so the bounce falls back to one.
   */
  async function bouncedEmail(id: string, smsToo: boolean): Promise<string> {
    n.h.sink.failNext({ stage: 'rcpt', code: 550, message: '5.1.1 No such user' });
    await upsertAccount(n.h.t.db, { id, currency: 'CNY', notifySms: smsToo });
    await seedOverdue(n.h.t.db, id);
    return waitFor(
      async () => {
        const rows = await n.h.t.raw<{ dedupe_key: string }[]>`
          select dedupe_key from notifications
           where account_id = ${id} and channel = 'email' and status = 'failed'`;
        return rows[0]?.dedupe_key;
      },
      15_000,
      'a bounced email',
    );
  }

  it('refused while the address is marked bounced; once corrected, sent to it once and on the timeline', async () => {
    const id = 'retry-message-1';
    const key = await bouncedEmail(id, true);
    const [marked] = await n.h.t.raw<{ email_bounced: boolean }[]>`
      select email_bounced from accounts where id = ${id}`;
    expect(marked?.email_bounced).toBe(true);
    const bounced = await retry(key, id);
    expect(bounced.status).toBe(409);
    expect((bounced.body as { error: string }).error).toBe('contact-unreachable');
    expect((bounced.body as { message: string }).message).toContain('email_bounced');

    // The billing system corrects the address and clears the mark.
    await upsertAccount(n.h.t.db, {
      id,
      currency: 'CNY',
      email: 'fixed-address@example.com',
      emailBounced: false,
    });
    const accepted = n.h.sink.accepted();
    const res = await retry(key, id);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ what: 'message', previousStatus: 'failed' });
    const sent = await waitFor(
      async () => {
        const [row] = await n.h.t.raw<
          { status: string; recipient: string; retried_at: Date | null }[]
        >`select status, recipient, retried_at from notifications where dedupe_key = ${key}`;
        return row?.status === 'sent' ? row : undefined;
      },
      15_000,
      'retried message sent',
    );
    expect(sent.recipient).toBe('fixed-address@example.com');
    expect(sent.retried_at).not.toBeNull();
    await n.h.sink.waitFor(accepted + 1);
    const to = n.h.sink.messages.filter((m) =>
      JSON.stringify(m.to ?? '').includes('fixed-address@example.com'),
    );
    expect(to).toHaveLength(1);
    const [outbox] = await n.h.t.raw<{ status: string }[]>`
      select status from outbox where idempotency_key = ${key}`;
    expect(outbox?.status).toBe('done');
    const account = (
      await n.app.inject({ method: 'GET', url: `/admin/accounts/${id}`, headers: asOps })
    ).body;
    expect(account).toContain(`retried message <code>${key}</code> (was failed: `);
    expect((await retry(key, id)).status).toBe(409);
  });

  it('refused once its fallback SMS reached the customer', async () => {
    const id = 'retry-message-2';
    const key = await bouncedEmail(id, false);
    await waitFor(
      async () => {
        const rows = await n.h.t.raw`
          select 1 from notifications where dedupe_key = ${`${key}-fallback`} and status = 'sent'`;
        return rows.length > 0 ? true : undefined;
      },
      15_000,
      'the fallback SMS sent',
    );
    await upsertAccount(n.h.t.db, { id, currency: 'CNY', emailBounced: false });
    const res = await retry(key, id);
    expect(res.status).toBe(409);
    expect((res.body as { error: string }).error).toBe('fallback-live');
    const [row] = await n.h.t.raw<{ status: string }[]>`
      select status from notifications where dedupe_key = ${key}`;
    expect(row?.status).toBe('failed');
  });
});

describe('overview, forecast and language', () => {
  it('counts accounts in good standing below their low-balance threshold', async () => {
    const id = 'low-balance-1';
    await upsertAccount(api.h.t.db, {
      id,
      currency: 'USD',
      timeZone: 'UTC',
      availableBalanceMinor: 500,
      lowBalanceThresholdMinor: 1_000,
      email: 'low-balance-1@example.com',
    });
    await waitFor(async () => {
      const [row] = await api.h.t.raw<{ low_balance: boolean }[]>`
        select low_balance from accounts where id = ${id}`;
      return row?.low_balance === true ? true : undefined;
    });
    const [n] = await api.h.t.raw<{ n: number }[]>`
      select count(*)::int as n from accounts where low_balance`;
    const overview = await page('/admin', asViewer);
    expect(overview).toContain(
      `Low balance (in good standing)</td><td class="state-low">${n?.n ?? -1}</td>`,
    );

    // Topped up: the next evaluation clears it.
    await upsertAccount(api.h.t.db, { id, currency: 'USD', availableBalanceMinor: 5_000 });
    await waitFor(async () => {
      const [row] = await api.h.t.raw<{ low_balance: boolean }[]>`
        select low_balance from accounts where id = ${id}`;
      return row?.low_balance === false ? true : undefined;
    });
  });

  it("the forecast leaves out today's reminder already sent, and keeps the next days'", async () => {
    const id = 'low-balance-forecast';
    await upsertAccount(api.h.t.db, {
      id,
      currency: 'USD',
      timeZone: 'UTC',
      availableBalanceMinor: 500,
      lowBalanceThresholdMinor: 1_000,
      email: 'low-balance-forecast@example.com',
    });
    await waitFor(async () => {
      const rows = await api.h.t.raw`
        select 1 from notifications where account_id = ${id} and template = 'low-balance'`;
      return rows.length > 0 ? true : undefined;
    });
    const next = await forecast(api.h.t.db, api.h.config.rules, id, new Date(), 3);
    expect(next.problem).toBeNull();
    // 72 hours from now hold three UTC midnights: one reminder each; today's is done.
    expect(next.entries.filter((x) => x.kind === 'low-balance-reminder')).toHaveLength(3);
  });

  it('the timeline reads in Chinese for a zh-CN operator', async () => {
    const zh = await page('/admin/accounts/retry-effect-1', {
      ...asViewer,
      'accept-language': 'zh-CN',
    });
    expect(zh).toContain('欠费周期 #1 开始');
    expect(zh).toContain('控制面 已执行');
    expect(zh).toContain('重试操作');
    expect(zh).not.toContain('overdue episode');
  });
});
