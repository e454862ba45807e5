import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { eq } from 'drizzle-orm';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount } from '../../src/adapters/db/billing-writers';
import { enforcementEvents } from '../../src/adapters/db/schema';
import { buildHttpServer } from '../../src/http/server';
import { startHarness, type Harness } from '../support/daemon';

/**
 * The dashboard in a real browser: Debian's chromium (apt-get install chromium) driven by
 * playwright-core, against a listening server. Logs in with HTTP credentials, opens the queues,
 * triggers "scan now" from the page and sees the job complete; without credentials it is refused.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OPS = { username: 'ops', password: 'ops-password-123456' };

let h: Harness;
let app: FastifyInstance;
let base: string;
const profiles: string[] = [];
const contexts: BrowserContext[] = [];

async function browser(credentials?: typeof OPS): Promise<BrowserContext> {
  // A new empty profile per context: no state leaks between runs.
  const dir = mkdtempSync(path.join(tmpdir(), 'ow-chromium-'));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    ...(credentials ? { httpCredentials: credentials } : {}),
  });
  contexts.push(context);
  return context;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM_PATH)`);
  }
  h = await startHarness({ DASHBOARD_USER: OPS.username, DASHBOARD_PASSWORD: OPS.password });
  app = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
  base = await app.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  for (const dir of profiles) rmSync(dir, { recursive: true, force: true });
  await app?.close();
  await h?.stop();
});

/**
 * Opens one of the page's two menus and answers its text once it has rendered: `links` is the
 * header's (the links to the other pages, bull-board's miscLinks), `queue` the queue's actions
 * (⋮, which holds "Add job").
 */
async function openMenu(page: Page, which: 'links' | 'queue'): Promise<string> {
  const menus = page.locator('button[aria-haspopup="menu"]');
  await expect.poll(() => menus.count(), { timeout: 15_000 }).toBe(2);
  await menus.nth(which === 'links' ? 0 : 1).click();
  return page.getByRole('menu').innerText({ timeout: 10_000 });
}

describe('dashboard in a browser', () => {
  it('logs in, opens the queues, triggers a scan and sees it complete', async () => {
    const context = await browser(OPS);
    const page = await context.newPage();
    const res = await page.goto(`${base}/admin/queues`);
    expect(res?.status()).toBe(200);
    for (const queue of ['scan', 'evaluate', 'effects']) {
      await page.getByText(queue, { exact: true }).first().waitFor({ timeout: 15_000 });
    }

    // "Scan now" from the page: a same-origin POST carrying the browser's Basic credentials.
    const triggered = await page.evaluate(async () => {
      const r = await fetch('/v1/jobs/balance-scan', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      return { status: r.status, body: (await r.json()) as { jobId?: string } };
    });
    expect(triggered.status).toBe(202);
    const jobId = triggered.body.jobId;
    expect(jobId).toBeTruthy();

    // The completed list of the scan queue shows the operator's job.
    const deadline = Date.now() + 20_000;
    let seen = false;
    while (!seen && Date.now() < deadline) {
      await page.goto(`${base}/admin/queues/queue/scan?status=completed`);
      seen = await page
        .getByText('operator:ops')
        .first()
        .waitFor({ timeout: 2_000 })
        .then(() => true)
        .catch(() => false);
    }
    expect(seen).toBe(true);
    const job = await h.daemon.ctx.queues.byName.scan.getJob(String(jobId));
    expect(await job?.getState()).toBe('completed');
  });

  it('loads under its CSP without violations, and refuses to be framed by another site', async () => {
    const context = await browser(OPS);
    const page = await context.newPage();
    const console: string[] = [];
    page.on('console', (m) => console.push(m.text()));
    await page.goto(`${base}/admin/queues`);
    await page.getByText('scan', { exact: true }).first().waitFor({ timeout: 15_000 });
    expect(console.filter((t) => /Content Security Policy/i.test(t))).toEqual([]);

    // A page of another origin framing the dashboard: the frame must stay empty.
    const evil = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<html><body><iframe id="f" src="${base}/admin/queues"></iframe></body></html>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.2', r));
    try {
      const { port } = evil.address() as AddressInfo;
      const framing = await context.newPage();
      const messages: string[] = [];
      framing.on('console', (m) => messages.push(m.text()));
      await framing.goto(`http://127.0.0.2:${port}/`);
      await framing.waitForTimeout(1_500);
      const dashboard = framing.frames().find((f) => f !== framing.mainFrame());
      // A string expression: this file is compiled without the DOM types.
      const text = await dashboard
        ?.evaluate<string>('document.body ? document.body.innerText : ""')
        .catch(() => '');
      expect(text ?? '').not.toContain('overdue-worker');
      expect(messages.some((t) => /frame-ancestors|Refused to (display|frame)/i.test(t))).toBe(
        true,
      );
    } finally {
      evil.close();
    }
  });

  it('Add job: the form starts from a valid example; a refused job shows the field and the reason', async () => {
    const context = await browser(OPS);
    const page = await context.newPage();
    await page.goto(`${base}/admin/queues/queue/evaluate`);
    const links = await openMenu(page, 'links');
    expect(links).toContain('Console');
    expect(links).toContain('Safety valves');
    await page.keyboard.press('Escape');
    await openMenu(page, 'queue');
    await page.getByText('Add job').first().click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('Job data').waitFor({ timeout: 10_000 });
    const editor = dialog.locator('.cm-content').first();
    expect(JSON.parse(await editor.innerText())).toEqual({ accountId: 'acct-123' });

    // An empty account id: the refusal names the field and says why, in the page.
    await editor.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.insertText('{"accountId": ""}');
    await dialog.getByRole('button', { name: 'Add' }).click();
    await page
      .getByText(/data\.accountId: /)
      .first()
      .waitFor({ timeout: 10_000 });

    // The refusal is a toast over the page for a few seconds: the next clicks wait for it to go
    // (under load a click could otherwise land on it).
    await page
      .getByText(/data\.accountId: /)
      .first()
      .waitFor({ state: 'hidden', timeout: 20_000 });

    // The example as it is (job name left empty: the queue's first job) is added.
    await upsertAccount(h.t.db, { id: 'acct-123', currency: 'USD' });
    await openMenu(page, 'queue');
    await page.getByText('Add job').first().click();
    await page.getByRole('dialog').getByRole('button', { name: 'Add' }).click();
    // recordTrigger files the operator's job under its account.
    const deadline = Date.now() + 10_000;
    let found = false;
    while (!found && Date.now() < deadline) {
      const rows = await h.t.db
        .select()
        .from(enforcementEvents)
        .where(eq(enforcementEvents.accountId, 'acct-123'));
      found = rows.some((e) => e.kind === 'operator-job' && e.actor === 'operator:ops');
      if (!found) await new Promise((r) => setTimeout(r, 200));
    }
    expect(found).toBe(true);
  }, 60_000);

  it('refuses the page without credentials', async () => {
    const context = await browser();
    const page = await context.newPage();
    const statuses: number[] = [];
    page.on('response', (r) => statuses.push(r.status()));
    // Chromium answers the Basic challenge by cancelling the login (no credentials to offer):
    // the navigation fails, after the server's 401.
    const outcome = await page
      .goto(`${base}/admin/queues`)
      .then((r) => `status ${r?.status()}`)
      .catch((e: Error) => e.message);
    expect(outcome).toMatch(/status 401|ERR_INVALID_AUTH_CREDENTIALS/);
    expect(statuses).not.toContain(200);
    // The same page fetched without a browser: 401 with the Basic challenge.
    const plain = await fetch(`${base}/admin/queues`);
    expect(plain.status).toBe(401);
    expect(plain.headers.get('www-authenticate')).toMatch(/^Basic/);
  });
});
