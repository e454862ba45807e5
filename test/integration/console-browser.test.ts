import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  upsertAccount,
  upsertBill,
  upsertPlan,
  upsertService,
  upsertStudioInstance,
} from '../../src/adapters/db/billing-writers';
import { formatMoney } from '../../src/domain/money';
import { OPS, seedOverdue, startApiHarness, VIEWER, type ApiHarness } from '../support/api-harness';
import { waitFor } from '../support/daemon';

/**
 * The operator console in a real browser (Debian's chromium driven by playwright-core): an
 * operator finds an account suspended beyond its protection quota, reads why, places an operator
 * hold and sees it on the timeline; the read-only viewer sees no action and its post is refused.
 * Full-page screenshots of the overview and the account page go to test-results/console/.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.resolve('test-results/console');
const ID = 'cust-8801';
/** An account whose suspension the control plane refused (400): a failed effect to retry. */
const REFUSED = 'cust-4400';
/** In good standing below its low-balance threshold. */
const LOW = 'cust-7700';
const DAY = 86_400_000;

let api: ApiHarness;
let base: string;
const profiles: string[] = [];
const contexts: BrowserContext[] = [];

async function browser(credentials: { user: string; password: string }): Promise<BrowserContext> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ow-console-'));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    locale: 'en-US',
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
    httpCredentials: { username: credentials.user, password: credentials.password },
  });
  contexts.push(context);
  return context;
}

/** Overdue ¥1,234.56 (live and vod) against a ¥500.00 quota; a studio on a duration plan. */
async function seed(): Promise<void> {
  const db = api.h.t.db;
  const now = Date.now();
  await upsertAccount(db, {
    id: ID,
    currency: 'CNY',
    availableBalanceMinor: -123_456,
    timeZone: 'Asia/Shanghai',
    locale: 'zh-CN',
    email: 'billing@cust-8801.example.com',
    phone: '+8613900008801',
    protectionCustom: true,
    protectionAmountMinor: 50_000,
    protectionDurationSeconds: 7 * 86_400,
  });
  await upsertService(db, { id: `${ID}-live`, accountId: ID, kind: 'streaming' });
  await upsertService(db, {
    id: `${ID}-studio`,
    accountId: ID,
    kind: 'studio',
    planType: 'duration',
  });
  await upsertStudioInstance(db, {
    id: `${ID}-stage`,
    accountId: ID,
    serviceId: `${ID}-studio`,
    name: 'Main stage',
    streaming: true,
  });
  await upsertPlan(db, {
    id: `${ID}-plan`,
    accountId: ID,
    kind: 'transcoding-minutes',
    totalUnits: 10_000,
    usedUnits: 8_200,
    startsAt: new Date(now - 30 * DAY),
    expiresAt: new Date(now + 60 * DAY),
    purchasedAt: new Date(now - 30 * DAY),
  });
  // vod first: alone it is within the quota, so whenever the daemon evaluates in between, the
  // suspension comes with the live bill and names both products.
  for (const [product, amountMinor] of [
    ['vod', 23_456],
    ['live', 100_000],
  ] as const) {
    await upsertBill(db, {
      id: `${ID}-${product}`,
      accountId: ID,
      product,
      amountMinor,
      issuedAt: new Date(now - 10 * DAY),
      dueAt: new Date(now - 3 * DAY),
    });
  }
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM_PATH)`);
  }
  mkdirSync(SHOTS, { recursive: true });
  api = await startApiHarness();
  base = await api.app.listen({ host: '127.0.0.1', port: 0 });
  await seed();
  await waitFor(
    async () => {
      const rows = await api.h.t.raw`
        select 1 from studio_instances where id = ${`${ID}-stage`} and release_due_at is not null`;
      return rows.length > 0 ? true : undefined;
    },
    20_000,
    'the studio release scheduled',
  );
  const raw = api.h.t.raw;
  await waitFor(
    async () => {
      const rows = await raw<{ status: string }[]>`
        select status from outbox where account_id = ${ID} and kind = 'control-plane'`;
      // Two suspensions: the studio's (at once, with the vod bill) and live's (with the live
      // bill, later); both must be done before the scripted 400, or it would hit live's.
      return rows.length === 2 && rows.every((r) => r.status === 'done') ? true : undefined;
    },
    20_000,
    "the first account's two suspensions applied",
  );
  api.h.cp.script.push(400);
  await seedOverdue(api.h.t.db, REFUSED);
  await upsertAccount(api.h.t.db, {
    id: LOW,
    currency: 'CNY',
    availableBalanceMinor: 3_000,
    lowBalanceThresholdMinor: 10_000,
    email: 'ops@cust-7700.example.com',
  });
  await waitFor(
    async () => {
      const failed = await raw`
        select 1 from outbox where account_id = ${REFUSED} and status = 'failed'`;
      return failed.length > 0 ? true : undefined;
    },
    20_000,
    'the suspension the control plane refused, failed',
  );
  await waitFor(
    async () => {
      const low = await raw`select 1 from accounts where id = ${LOW} and low_balance`;
      return low.length > 0 ? true : undefined;
    },
    20_000,
    'the low-balance account evaluated',
  );
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  for (const dir of profiles) rmSync(dir, { recursive: true, force: true });
  await api?.stop();
});

describe('operator console in a browser', () => {
  it('an operator finds the account, reads why it is suspended and places an operator hold', async () => {
    const page = await (await browser(OPS)).newPage();
    page.setDefaultTimeout(8_000);
    const csp: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
    });

    expect((await page.goto(`${base}/admin`))?.status()).toBe(200);
    await page.getByText('Suspended', { exact: true }).waitFor();
    const lowRow = page.locator('tr', { hasText: 'Low balance (in good standing)' });
    expect(await lowRow.textContent()).toContain('1');
    const failure = page.locator('tr', { hasText: REFUSED }).filter({ hasText: 'failed' });
    await failure.locator('button', { hasText: 'Retry' }).waitFor();
    await page.screenshot({ path: path.join(SHOTS, 'overview.png'), fullPage: true });

    // Retry the refused suspension: the control plane answers 200 now; the account page says so.
    await failure.locator('button', { hasText: 'Retry' }).click();
    expect(page.url()).toContain(`/admin/accounts/${REFUSED}?done=`);
    await page.getByText('is pending again (was failed)').waitFor();
    await waitFor(
      async () => {
        const rows = await api.h.t.raw`
          select 1 from outbox where account_id = ${REFUSED} and kind = 'control-plane'
             and status = 'done'`;
        return rows.length > 0 ? true : undefined;
      },
      10_000,
      'the retried suspension applied',
    );
    await page.goto(`${base}/admin/accounts/${REFUSED}`);
    await page.getByText(/retried effect .* \(was failed: /).waitFor();
    expect(await page.locator('button', { hasText: 'Retry' }).count()).toBe(0);
    await page.goto(`${base}/admin`);

    await page.fill('input[name=q]', 'BILLING@cust-88');
    await page.click('button:has-text("Search")');
    await page.click(`a[href="/admin/accounts/${ID}"]`);
    expect(page.url()).toBe(`${base}/admin/accounts/${ID}`);

    const overdue = formatMoney({ amountMinor: 123_456, currency: 'CNY' }, 'en');
    const quota = formatMoney({ amountMinor: 50_000, currency: 'CNY' }, 'en');
    const reason = `suspended: overdue ${overdue} exceeds the protection quota of ${quota} (live, vod)`;
    await page.getByText(reason).first().waitFor();
    await page.getByText(`${overdue} / ${quota}`).waitFor();
    // The simulator's next 3 days: the studio's scheduled release happens, no payment assumed.
    await page.getByText(`release studio instance ${ID}-stage`).waitFor();

    const row = page.locator('tr', { hasText: `${ID}-live` }).first();
    await row.locator('input[name=reason]').fill('chargeback under review');
    await row.locator('button', { hasText: 'Operator hold' }).click();
    await page.getByText(`Operator hold placed on ${ID}-live.`).waitFor();
    await page
      .getByText(
        `operator hold placed on service ${ID}-live — operator:ops: chargeback under review`,
      )
      .waitFor();
    expect(await row.textContent()).toContain('overdue, operator');
    await page.screenshot({ path: path.join(SHOTS, 'account.png'), fullPage: true });
    expect(csp).toEqual([]);
  });

  it('the read-only viewer sees the account without any action, and its post is refused', async () => {
    const page = await (await browser(VIEWER)).newPage();
    expect((await page.goto(`${base}/admin/accounts/${ID}`))?.status()).toBe(200);
    await page.getByText('exceeds the protection quota').first().waitFor();
    expect(await page.locator('form[method=post]').count()).toBe(0);
    expect(await page.locator('button').count()).toBe(0);
    // The page's CSP forbids script requests; the browser context's client posts the form as
    // the page would (same origin, the viewer's credentials).
    const res = await page.context().request.post(`${base}/admin/accounts/${ID}/hold`, {
      headers: { origin: base },
      form: { serviceId: `${ID}-live`, confirmAccountId: ID },
    });
    const status = res.status();
    expect(status).toBe(403);
  });
});
