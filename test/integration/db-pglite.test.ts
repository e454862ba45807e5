import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccountSnapshot } from '../../src/adapters/db/account-snapshot';
import { upsertAccount, upsertBill } from '../../src/adapters/db/billing-writers';
import { createDb } from '../../src/adapters/db/client';
import { insertOutbox } from '../../src/adapters/db/daemon-writers';
import { migrate } from '../../src/adapters/db/migrate';
import { accounts, outbox } from '../../src/adapters/db/schema';
import { pgError } from '../support/db';

const NOW = new Date('2025-06-10T08:00:00.000Z');
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ow-pglite-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('embedded PGlite', () => {
  it('migrates, round-trips, enforces checks and persists across reopen', async () => {
    const first = await createDb(null, dataDir);
    expect(first.driver).toBe('pglite');
    try {
      await migrate(first.db);
      await migrate(first.db);
      await upsertAccount(first.db, {
        id: 'acc-p',
        currency: 'EUR',
        timeZone: 'Europe/Paris',
        availableBalanceMinor: 5_000_000_000_123,
        protectionCustom: true,
        protectionDurationSeconds: 60,
        planAlertThresholds: [{ kind: 'units', units: 5 }],
      });
      await upsertBill(first.db, {
        id: 'bill-p',
        accountId: 'acc-p',
        product: 'live',
        amountMinor: 900,
        issuedAt: new Date('2025-05-01T00:00:00Z'),
        dueAt: new Date('2025-06-01T00:00:00Z'),
      });
      expect(
        await insertOutbox(first.db, {
          idempotencyKey: 'k-1',
          kind: 'k',
          accountId: 'acc-p',
          payload: { n: 1 },
        }),
      ).toBe(true);
      expect(
        await insertOutbox(first.db, {
          idempotencyKey: 'k-1',
          kind: 'k',
          accountId: 'acc-p',
          payload: {},
        }),
      ).toBe(false);
      expect(
        await pgError(() => first.db.insert(accounts).values({ id: 'a:b', currency: 'EUR' })),
      ).toEqual({ code: '23514', constraint: 'accounts_id_format' });

      const result = await first.db.transaction((tx) =>
        loadAccountSnapshot(tx, 'acc-p', NOW, { revertNoticeWindowMs: 0 }),
      );
      expect(result.ok).toBe(true);
      if (result.ok) {
        expect(result.snapshot).toMatchObject({
          currency: 'EUR',
          timeZone: 'Europe/Paris',
          availableBalanceMinor: 5_000_000_000_123,
          protection: { amountMinor: null, durationMs: 60_000 },
          planThresholds: [{ kind: 'units', units: 5 }],
          bills: [
            {
              id: 'bill-p',
              product: 'live',
              amountMinor: 900,
              paidMinor: 0,
              dueAt: new Date('2025-06-01T00:00:00Z'),
            },
          ],
        });
      }
    } finally {
      await first.close();
    }

    const second = await createDb(null, dataDir);
    try {
      await migrate(second.db);
      const [row] = await second.db.select().from(accounts).where(eq(accounts.id, 'acc-p'));
      expect(row?.availableBalanceMinor).toBe(5_000_000_000_123);
      const boxes = await second.db.select().from(outbox);
      expect(boxes.map((b) => [b.idempotencyKey, b.payload])).toEqual([['k-1', { n: 1 }]]);
    } finally {
      await second.close();
    }
  });
});
