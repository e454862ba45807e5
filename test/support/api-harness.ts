import type { FastifyInstance, InjectOptions } from 'fastify';
import pino from 'pino';
import { upsertAccount, upsertBill, upsertService } from '../../src/adapters/db/billing-writers';
import type { Db } from '../../src/adapters/db/client';
import type { DaemonOptions } from '../../src/daemon';
import { buildHttpServer } from '../../src/http/server';
import { startHarness, type Harness } from './daemon';

export const OPS = { user: 'ops', password: 'ops-password-123456' };
export const VIEWER = { user: 'viewer', password: 'viewer-password-123456' };
const basic = (u: { user: string; password: string }) =>
  `Basic ${Buffer.from(`${u.user}:${u.password}`).toString('base64')}`;
export const asOps = { authorization: basic(OPS) };
export const asViewer = { authorization: basic(VIEWER) };

export interface ApiHarness<H extends Harness = Harness> {
  readonly h: H;
  readonly app: FastifyInstance;
  /** An injected request; the body parsed as JSON (checked field by field by the tests). */
  call(opts: InjectOptions): Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  stop(): Promise<void>;
}

/**
 * `startHarness` (or `start`, e.g. startNotifyHarness) with the operator and the read-only viewer
 * accounts configured, and the HTTP server built on its daemon (requests are injected, no port
 * is opened).
 */
export async function startApiHarness<H extends Harness = Harness>(
  env: Record<string, string> = {},
  options: Partial<DaemonOptions> = {},
  start: (
    env: Record<string, string>,
    options: Partial<DaemonOptions>,
  ) => Promise<H> = startHarness as (
    env: Record<string, string>,
    options: Partial<DaemonOptions>,
  ) => Promise<H>,
): Promise<ApiHarness<H>> {
  const h = await start(
    {
      DASHBOARD_USER: OPS.user,
      DASHBOARD_PASSWORD: OPS.password,
      DASHBOARD_VIEWER_USER: VIEWER.user,
      DASHBOARD_VIEWER_PASSWORD: VIEWER.password,
      ...env,
    },
    options,
  );
  const app = await buildHttpServer({ daemon: h.daemon, logger: pino({ level: 'silent' }) });
  await app.ready();
  return {
    h,
    app,
    call: async (opts) => {
      const res = await app.inject(opts);
      return {
        status: res.statusCode,
        body: res.body ? (JSON.parse(res.body) as unknown) : undefined,
      };
    },
    stop: async () => {
      await app.close();
      await h.stop();
    },
  };
}

const DAY = 86_400_000;

/**
 * Account `id` with one live service and a 50,000 bill ten days overdue, without protection
 * (`owed`), or with that bill paid in full and a positive balance.
 */
export async function seedOverdue(db: Db, id: string, owed = true): Promise<void> {
  const now = Date.now();
  // One transaction: an evaluation between the account and its bill would see a negative balance
  // with nothing overdue and queue a low-balance reminder before the suspension notice.
  await db.transaction(async (tx) => {
    await upsertAccount(tx, {
      id,
      currency: 'CNY',
      availableBalanceMinor: owed ? -50_000 : 10_000,
      timeZone: 'Asia/Shanghai',
      locale: 'en',
      email: `${id}@example.com`,
      phone: '+8613800000000',
      protectionCustom: true,
      protectionAmountMinor: 0,
    });
    await upsertService(tx, { id: `${id}-live`, accountId: id, kind: 'streaming' });
    await upsertBill(tx, {
      id: `${id}-bill`,
      accountId: id,
      product: 'live',
      amountMinor: 50_000,
      paidMinor: owed ? 0 : 50_000,
      ...(owed ? {} : { status: 'paid' as const }),
      issuedAt: new Date(now - 20 * DAY),
      dueAt: new Date(now - 10 * DAY),
    });
  });
}
