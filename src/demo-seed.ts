import { sql } from 'drizzle-orm';
import type { Db } from './adapters/db/client';

/**
 * The demo's accounts, written as the billing system would write them. With the default policy
 * and the demo's compressed timings they produce every kind of customer message: low balance,
 * overdue reminder, suspension (caused by another product), resume after a payment, studio
 * suspension / release warning / release, plan quota low, plan expiring, revert to
 * pay-as-you-go.
 */
export async function seedDemo(db: Db, now: Date): Promise<string[]> {
  const hour = 3_600_000;
  const at = (ms: number) => new Date(now.getTime() + ms).toISOString();
  const accounts: [string, string, number, string][] = [
    // id, locale, available balance (minor), time zone
    ['demo-low-balance', 'en', 500, 'Asia/Shanghai'],
    ['demo-protected', 'zh-CN', 200_000, 'Asia/Shanghai'],
    ['demo-suspended', 'en', 200_000, 'Europe/Berlin'],
    ['demo-pays', 'en', 200_000, 'America/New_York'],
    ['demo-studio', 'zh-CN', 200_000, 'Asia/Shanghai'],
    ['demo-plans', 'en', 200_000, 'UTC'],
  ];
  await db.transaction(async (tx) => {
    for (const [id, locale, balance, zone] of accounts) {
      await tx.execute(sql`
        insert into accounts (id, currency, available_balance_minor, time_zone, locale, email, phone)
        values (${id}, 'CNY', ${balance}, ${zone}, ${locale}, ${`${id}@example.com`}, '+8613800138000')`);
    }
    for (const id of ['demo-protected', 'demo-suspended', 'demo-pays']) {
      for (const kind of ['streaming', 'recording', 'screenshots']) {
        await tx.execute(sql`insert into services (id, account_id, kind)
                             values (${`${id}-${kind}`}, ${id}, ${kind})`);
      }
    }
    await tx.execute(sql`insert into services (id, account_id, kind, plan_type)
                         values ('demo-studio-svc', 'demo-studio', 'studio', 'duration')`);
    await tx.execute(sql`insert into studio_instances (id, account_id, service_id, name, streaming)
                         values ('demo-studio-main', 'demo-studio', 'demo-studio-svc', 'Main stage', true)`);
    // R4: within the default 50.00 quota; R5/R6: beyond it, caused by another product; R7: paid later.
    const bills: [string, string, string, number][] = [
      ['demo-protected-b1', 'demo-protected', 'live', 3_000],
      ['demo-suspended-b1', 'demo-suspended', 'oss', 25_000],
      ['demo-pays-b1', 'demo-pays', 'live', 18_000],
      ['demo-studio-b1', 'demo-studio', 'live', 800],
    ];
    for (const [id, account, product, amount] of bills) {
      await tx.execute(sql`
        insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
        values (${id}, ${account}, ${product}, ${amount}, ${at(-48 * hour)}::timestamptz, ${at(-1_000)}::timestamptz)`);
    }
    // R10: quota low (10 % left) and expiring in 3 days; R1: another kind whose only plan expired.
    await tx.execute(sql`
      insert into resource_plans (id, account_id, kind, total_units, used_units, starts_at, expires_at, purchased_at)
      values ('demo-plan-transcode', 'demo-plans', 'transcoding-minutes', 10000, 9000,
              ${at(-20 * 24 * hour)}::timestamptz, ${at(3 * 24 * hour)}::timestamptz, ${at(-20 * 24 * hour)}::timestamptz),
             ('demo-plan-recording', 'demo-plans', 'recording-hours', 100, 40,
              ${at(-30 * 24 * hour)}::timestamptz, ${at(-hour)}::timestamptz, ${at(-30 * 24 * hour)}::timestamptz)`);
  });
  return accounts.map(([id]) => id);
}
