import { sql } from 'drizzle-orm';
import type { RuleSettings } from '../../domain/rules';
import { queryRows, type Db } from './client';

/**
 * Candidate selection for the scans. Each page is a keyset query (`id > cursor order by id
 * limit n`, never OFFSET) filtered in SQL to the accounts whose decisions could change, so a
 * scan reads each account row once and holds one page in memory.
 */

/**
 * One page of balance-scan candidates after `cursor` (exclusive), in id order. A low balance
 * whose reminder already went out in the current window is not a candidate (R3 allows one per
 * window), which keeps the daily bulk of low-balance accounts out of every scan but the first.
 */
export async function balanceCandidates(
  db: Db,
  cursor: string,
  limit: number,
  now: Date,
  rules: RuleSettings,
  /**
   * Skip accounts in enforcement evaluated at or after this instant, unless a bill fell due
   * between that evaluation and `now` (the periodic scan); null reads every candidate.
   */
  recheckBefore: Date | null = null,
): Promise<string[]> {
  const at = now.toISOString();
  const fresh =
    recheckBefore === null
      ? sql`false`
      : sql`(evaluated_at >= ${recheckBefore.toISOString()}::timestamptz
              and (earliest_unpaid_due_at is null
                   or earliest_unpaid_due_at <= evaluated_at
                   or earliest_unpaid_due_at > ${at}::timestamptz))`;
  const rows = await queryRows<{ id: string }>(
    db,
    sql`
    select id from accounts
     where id > ${cursor}
       and ((available_balance_minor < coalesce(low_balance_threshold_minor, ${rules.lowBalanceThresholdMinor})
             and (low_balance_quiet_until is null or low_balance_quiet_until <= ${at}::timestamptz))
            or ((enforcement_state <> 'active'
                 or episode_started_at is not null
                 or earliest_unpaid_due_at < ${at}::timestamptz)
                and not ${fresh}))
     order by id
     limit ${limit}`,
  );
  return rows.map((r) => r.id);
}

/**
 * Accounts whose enforcement rows disagree with their state: an overdue hold on an active
 * account (an interrupted resume; a released studio keeps its hold and is final, so it is not
 * one), or a studio release that is due. Small sets, read whole.
 */
export async function repairCandidates(db: Db, now: Date): Promise<string[]> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`
    select distinct s.account_id as id
      from services s join accounts a on a.id = s.account_id
     where s.overdue_hold and s.status <> 'released' and a.enforcement_state = 'active'
    union
    select distinct account_id as id from studio_instances
     where released_at is null and release_due_at is not null
       and release_due_at <= ${now.toISOString()}::timestamptz`,
  );
  return rows.map((r) => r.id);
}

/**
 * One page of plan-scan candidates: accounts with a plan that is near a quota threshold, near
 * expiry, recently ended (R1 revert notice), or has custom thresholds the defaults cannot judge.
 */
export async function planCandidates(
  db: Db,
  cursor: string,
  limit: number,
  now: Date,
  rules: RuleSettings,
): Promise<string[]> {
  let maxPercent = 0;
  let maxUnits = 0;
  for (const t of rules.planThresholds) {
    if (t.kind === 'percent') maxPercent = Math.max(maxPercent, t.percent);
    else maxUnits = Math.max(maxUnits, t.units);
  }
  const maxOffsetMs = Math.max(0, ...rules.planExpiryReminderMs);
  const nowIso = now.toISOString();
  const rows = await queryRows<{ id: string }>(
    db,
    sql`
    select distinct p.account_id as id
      from resource_plans p
      join accounts a on a.id = p.account_id
     where p.account_id > ${cursor}
       and p.expires_at > ${nowIso}::timestamptz - make_interval(secs => ${rules.revertNoticeWindowMs / 1000})
       and (p.expires_at <= ${nowIso}::timestamptz + make_interval(secs => ${maxOffsetMs / 1000})
            or (p.total_units - p.used_units) * 100 <= p.total_units * ${maxPercent}
            or (p.total_units - p.used_units) <= ${maxUnits}
            or p.alert_thresholds is not null
            or a.plan_alert_thresholds is not null)
     order by p.account_id
     limit ${limit}`,
  );
  return rows.map((r) => r.id);
}
