import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { fleetStateCounts } from '../../src/adapters/db/console-queries';
import { formatMoney } from '../../src/domain/money';
import {
  asOps,
  asViewer,
  seedOverdue,
  startApiHarness,
  type ApiHarness,
} from '../support/api-harness';
import { waitFor } from '../support/daemon';

/** The operator console (/admin, /admin/accounts): what each account sees, and its forms. */

let api: ApiHarness;
const form = { 'content-type': 'application/x-www-form-urlencoded' };
const ID = 'console-acct-1';

beforeAll(async () => {
  api = await startApiHarness();
  await seedOverdue(api.h.t.db, ID);
  await waitFor(async () => {
    const rows = await api.h.t.raw`
      select 1 from enforcement_events where account_id = ${ID} and kind = 'service-suspended'`;
    return rows.length > 0 ? true : undefined;
  });
});
afterAll(async () => {
  await api?.stop();
});

async function get(url: string, headers: Record<string, string> = asOps) {
  const res = await api.app.inject({ method: 'GET', url, headers });
  return { status: res.statusCode, html: res.body, headers: res.headers };
}

async function post(path: string, body: string, headers: Record<string, string> = asOps) {
  return api.app.inject({
    method: 'POST',
    url: `/admin/accounts/${ID}/${path}`,
    headers: { ...headers, ...form },
    payload: body,
  });
}

describe('operator console', () => {
  it('finds an account by id, email or phone prefix, case-insensitively for email, paged', async () => {
    for (const q of ['console-acct', ID, 'CONSOLE-acct-1@EX', '+86138']) {
      const page = await get(`/admin/accounts?q=${encodeURIComponent(q)}`, asViewer);
      expect(page.status).toBe(200);
      expect(page.html).toContain(`href="/admin/accounts/${ID}"`);
    }
    const wildcard = await get(`/admin/accounts?q=${encodeURIComponent('%')}`);
    expect(wildcard.html).toContain('No account matches.');
  });

  it('prefix searches can be served by the search indexes', async () => {
    const plan = await api.h.t.raw.begin(async (sql) => {
      await sql`set local enable_seqscan = off`;
      const rows = await sql<{ 'QUERY PLAN': string }[]>`
        explain select id from accounts
         where id in ((select id from accounts where id like 'cons%' limit 1000)
                      union (select id from accounts where lower(email) like 'cons%' limit 1000)
                      union (select id from accounts where phone like '+86%' limit 1000))
         order by id limit 26`;
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toContain('accounts_id_prefix_idx');
    expect(plan).toContain('accounts_email_prefix_idx');
    expect(plan).toContain('accounts_phone_prefix_idx');
  });

  it('the account page says why it is suspended, with amounts in its currency and UTC on hover', async () => {
    const page = await get(`/admin/accounts/${ID}`, asViewer);
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    const overdue = formatMoney({ amountMinor: 50_000, currency: 'CNY' }, 'en');
    const quota = formatMoney({ amountMinor: 0, currency: 'CNY' }, 'en');
    expect(page.html).toContain(
      `suspended: overdue ${overdue} exceeds the protection quota of ${quota} (live)`,
    );
    expect(page.html).toMatch(/title="\d{4}-\d\d-\d\dT[\d:.]+Z UTC"/);
    expect(page.html).toContain(`${ID}-live`);
    expect(page.html).toContain('class="bar over"');
    // The viewer reads everything and has no form to act with; its posts are refused.
    expect(page.html).not.toContain('method="post"');
    const refused = await post('hold', `serviceId=${ID}-live&confirmAccountId=${ID}`, asViewer);
    expect(refused.statusCode).toBe(403);

    const zh = await get(`/admin/accounts/${ID}`, {
      ...asViewer,
      'accept-language': 'zh-CN,en;q=0.5',
    });
    expect(zh.html).toContain('已停服');
    expect(zh.html).toContain(formatMoney({ amountMinor: 50_000, currency: 'CNY' }, 'zh-CN'));
    expect((await get('/admin/accounts/no-such-account')).status).toBe(404);
  });

  it('an operator places and releases a hold from the page; both show on the timeline', async () => {
    const before = await get(`/admin/accounts/${ID}`);
    expect(before.html).toContain('method="post"');
    const held = await post(
      'hold',
      `serviceId=${ID}-live&confirmAccountId=${ID}&reason=fraud+check`,
    );
    expect(held.statusCode).toBe(303);
    const after = await get(String(held.headers.location));
    expect(after.html).toContain(`Operator hold placed on ${ID}-live.`);
    expect(after.html).toContain(
      `operator hold placed on service ${ID}-live — operator:ops: fraud check`,
    );
    const [svc] = await api.h.t.raw<{ operator_hold: boolean }[]>`
      select operator_hold from services where id = ${`${ID}-live`}`;
    expect(svc?.operator_hold).toBe(true);

    const other = await post('hold', `serviceId=${ID}-live&confirmAccountId=someone-else`);
    expect(other.statusCode).toBe(400);
    const released = await post('release-hold', `serviceId=${ID}-live&confirmAccountId=${ID}`);
    expect(released.statusCode).toBe(303);
    const last = await get(String(released.headers.location));
    expect(last.html).toContain(`operator hold released on service ${ID}-live`);
  });

  it('a studio release needs the account id typed exactly', async () => {
    const wrong = await post('release-studio', 'instanceId=none&confirmAccountId=nope');
    expect(wrong.statusCode).toBe(400);
    expect(wrong.body).toContain('type the account id exactly');
    const missing = await post('release-studio', `instanceId=none&confirmAccountId=${ID}`);
    expect(missing.statusCode).toBe(404);
  });

  it('evaluate now enqueues an evaluation attributed to the operator', async () => {
    const res = await post('evaluate', '');
    expect(res.statusCode).toBe(303);
    expect(String(res.headers.location)).toContain('done=');
  });

  it('the overview counts the suspended account and draws 48 hourly bars', async () => {
    await upsertAccount(api.h.t.db, { id: 'console-good', currency: 'USD' });
    const page = await get('/admin', asViewer);
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.html).toMatch(/Suspended<\/td><td class="state-suspended">[1-9]/);
    expect(page.html.match(/<g><title>/g)).toHaveLength(48);
    expect(page.html).toContain('href="/admin/queues"');
    expect(page.html).toContain('href="/admin/safety"');
  });

  it('counts accounts exactly below the cap, and takes the statistics estimate at or beyond it', async () => {
    const raw = api.h.t.raw;
    const [exact] = await raw<{ n: string }[]>`select count(*) as n from accounts`;
    const total = Number(exact?.n);
    expect(total).toBeGreaterThan(1);
    // With statistics below the cap (never analysed, or analysed before these rows), the count
    // is exact.
    expect((await fleetStateCounts(api.h.t.db, 1_000)).totalEstimate).toBe(total);
    // Beyond the cap the statistics answer (no count): after ANALYZE, pg_class's figure.
    await raw`analyze accounts`;
    const [stats] = await raw<{ n: string }[]>`
      select reltuples::bigint as n from pg_class where oid = 'accounts'::regclass`;
    const counts = await fleetStateCounts(api.h.t.db, 1);
    expect(counts.totalEstimate).toBe(Number(stats?.n));
    expect(counts.totalEstimate).toBeGreaterThanOrEqual(1);
  });
});
