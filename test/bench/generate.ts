/**
 * The benchmark's data, generated in SQL on a freshly migrated database (see run.ts, step 1):
 * `n` accounts, about 2 % low balance, 1 % overdue beyond the protection quota, 0.2 % overdue
 * within it, 5 % with unpaid bills not yet due, duration-plan studios with instances and
 * resource plans; then accounts.earliest_unpaid_due_at as migration 0002 computes it, and
 * VACUUM ANALYZE. Returns the step timings (s) and row counts.
 */
import postgres from 'postgres';
import { log, round } from './common';

export async function generate(url: string, N: number): Promise<Record<string, number>> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  const timings: Record<string, number> = {};
  const step = async (name: string, run: () => Promise<unknown>) => {
    const t = performance.now();
    await run();
    timings[name] = round((performance.now() - t) / 1000, 2);
    log(`generate ${N}: ${name} ${timings[name]} s`);
  };
  try {
    // Triggers (and the FK triggers) off for this session only.
    await sql`set session_replication_role = replica`;
    await sql`set maintenance_work_mem = '256MB'`;
    await step('accounts', () =>
      sql.unsafe(`
        insert into accounts (id, currency, available_balance_minor, time_zone, locale, email,
                              phone, notify_email, notify_sms)
        select 'acct-' || lpad(i::text, 8, '0'), 'USD',
               case when i % 50 = 3 then 500 + (i % 9000) else 1000000 + (i % 100000) end,
               (array['UTC', 'Asia/Shanghai', 'America/New_York', 'Europe/Berlin'])[1 + i % 4],
               'en', 'u' || i || '@example.com',
               case when i % 2 = 0 then '+1415' || lpad((i % 10000000)::text, 7, '0') end,
               true, true
          from generate_series(1, ${N}) i`),
    );
    // Every account streams; overdue, protected and every tenth account have all three live
    // services; 0.5 % have a duration-plan studio with one or two instances.
    await step('services', () =>
      sql.unsafe(`
        insert into services (id, account_id, kind)
        select 'acct-' || lpad(i::text, 8, '0') || '-' || k, 'acct-' || lpad(i::text, 8, '0'), k
          from generate_series(1, ${N}) i
         cross join (values ('streaming'), ('recording'), ('screenshots')) v(k)
         where k = 'streaming' or i % 100 = 11 or i % 500 = 13 or i % 10 = 0`),
    );
    await step('studios', async () => {
      await sql.unsafe(`
        insert into services (id, account_id, kind, plan_type)
        select 'acct-' || lpad(i::text, 8, '0') || '-studio', 'acct-' || lpad(i::text, 8, '0'),
               'studio', 'duration'
          from generate_series(1, ${N}) i where i % 400 in (11, 200)`);
      await sql.unsafe(`
        insert into studio_instances (id, account_id, service_id, name, streaming)
        select 'acct-' || lpad(i::text, 8, '0') || '-inst' || n, 'acct-' || lpad(i::text, 8, '0'),
               'acct-' || lpad(i::text, 8, '0') || '-studio', 'Stage ' || n, i % 3 = 0
          from generate_series(1, ${N}) i cross join generate_series(1, 2) n
         where i % 400 in (11, 200) and (n = 1 or i % 800 < 400)`);
    });
    await step('plans', () =>
      sql.unsafe(`
        insert into resource_plans (id, account_id, kind, total_units, used_units, starts_at,
                                    expires_at, purchased_at)
        select 'acct-' || lpad(i::text, 8, '0') || '-plan', 'acct-' || lpad(i::text, 8, '0'),
               'transcoding-minutes', 1000, case when i % 500 < 250 then 850 else 100 end,
               now() - interval '10 days',
               now() + case when i % 1000 < 500 then interval '20 days' else interval '3 days' end,
               now() - interval '10 days'
          from generate_series(1, ${N}) i where i % 250 in (3, 7)`),
    );
    await step('bills', () =>
      sql.unsafe(`
        insert into bills (id, account_id, product, amount_minor, paid_minor, issued_at, due_at,
                           status)
        select 'bill-' || i || '-' || v.tag, 'acct-' || lpad(i::text, 8, '0'), v.product,
               v.amount, v.paid, v.due - interval '30 days', v.due, v.status
          from generate_series(1, ${N}) i
         cross join lateral (values
           ('od', 'live', 6000 + (i % 7) * 1000, 0,
              now() - make_interval(days => 1 + i % 20), 'unpaid', i % 100 = 11),
           ('oss', 'oss', 2000, 0, now() - interval '3 days', 'unpaid', i % 300 = 11),
           ('prot', 'live', 3000, 0, now() - interval '2 days', 'unpaid', i % 500 = 13),
           ('fut', 'live', 4000, 0, now() + make_interval(days => 1 + i % 20), 'unpaid',
              i % 20 = 5),
           ('paid', 'live', 5000, 5000, now() - make_interval(days => 30 + i % 60), 'paid',
              i % 4 = 0)
         ) v(tag, product, amount, paid, due, status, keep)
         where v.keep`),
    );
    // As migration 0002 does.
    await step('earliest_unpaid_due_at', () =>
      sql.unsafe(`
        update accounts a set earliest_unpaid_due_at = d.due
          from (select account_id, min(due_at) as due from bills
                 where status = 'unpaid' and amount_minor > paid_minor group by account_id) d
         where d.account_id = a.id`),
    );
    await sql`set session_replication_role = origin`;
    await step('vacuum_analyze', () => sql.unsafe('vacuum (analyze)'));
    const [counts] = await sql<Record<string, string>[]>`
      select (select count(*) from accounts) as accounts,
             (select count(*) from accounts where available_balance_minor < 10000) as low_balance,
             (select count(*) from accounts where earliest_unpaid_due_at < now()) as overdue,
             (select count(*) from services) as services,
             (select count(*) from studio_instances) as studio_instances,
             (select count(*) from resource_plans) as plans,
             (select count(*) from bills) as bills,
             pg_total_relation_size('accounts') as accounts_bytes`;
    for (const [k, v] of Object.entries(counts ?? {})) timings[`count_${k}`] = Number(v);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return timings;
}
