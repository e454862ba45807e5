import { loadAccountSnapshots } from '../../adapters/db/account-snapshot';
import { sql } from 'drizzle-orm';
import { queryRows, type Db } from '../../adapters/db/client';
import type { RuleSettings } from '../../domain/rules';
import { describeDecision, simulate } from '../../domain/simulate';
import { e, instant, type UiLang } from './format';

/**
 * The policy simulator's next days for one account, on its page: the snapshot as it stands (read
 * in a read-only transaction, no lock), replayed hourly and at every timer with no payment.
 */

const HOUR = 3_600_000;
/** Entries shown; the replay is bounded by its step count too. */
const SHOWN = 30;

export interface Forecast {
  readonly entries: { at: Date; kind: string; text: string }[];
  readonly problem: string | null;
}

export async function forecast(
  db: Db,
  rules: RuleSettings,
  accountId: string,
  now: Date,
  days: number,
): Promise<Forecast> {
  const loaded = await db.transaction(
    (tx) =>
      loadAccountSnapshots(
        tx,
        [accountId],
        now,
        { revertNoticeWindowMs: rules.revertNoticeWindowMs },
        'read',
      ),
    { accessMode: 'read only' },
  );
  const result = loaded.results.get(accountId);
  if (result === undefined || !result.ok) {
    return { entries: [], problem: result?.reason ?? 'not loaded' };
  }
  const run = simulate(result.snapshot, rules, {
    from: now,
    to: new Date(now.getTime() + days * 24 * HOUR),
    stepMs: HOUR,
    maxSteps: days * 24 * 4,
  });
  const upcoming = run.timeline.filter((x) => x.decision.kind !== 'wake').slice(0, SHOWN * 2);
  const done = await carriedOut(
    db,
    upcoming.map((x) => x.decision.key),
  );
  return {
    problem: null,
    entries: upcoming
      .filter((x) => !done.has(x.decision.key))
      .slice(0, SHOWN)
      .map((x) => ({ at: x.at, kind: x.decision.kind, text: describeDecision(x.decision) })),
  };
}

/**
 * The decision keys the daemon has already carried out: a decision leaves an event, an outbox
 * row or a message per channel under its key (src/adapters/db/apply-decisions.ts), so the
 * simulator's replay of one (a reminder of today sent this morning) is not shown as to come.
 * One statement, each key looked up by the unique indexes.
 */
async function carriedOut(db: Db, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await queryRows<{ k: string }>(
    db,
    sql`select k from jsonb_array_elements_text(${JSON.stringify(keys)}::jsonb) as k
         where exists (select 1 from enforcement_events
                        where idempotency_key in (k, k || '-unreachable'))
            or exists (select 1 from outbox where idempotency_key = k)
            or exists (select 1 from notifications
                        where dedupe_key in (k || '-email', k || '-sms'))`,
  );
  return new Set(rows.map((r) => r.k));
}

export function renderForecast(f: Forecast, timeZone: string, lang: UiLang): string {
  const zh = lang === 'zh-CN';
  const title = zh
    ? '未来 3 天（策略模拟，假设不付款）'
    : 'Next 3 days (policy simulator, no payment)';
  const note = zh
    ? '从现在起每小时及每个定时点评估；已执行过的决定（相同键）不再列出，守护进程也不会重复执行。'
    : 'Evaluated now, hourly and at every timer; decisions already carried out (same key) are left out: the daemon does not repeat them.';
  const body =
    f.problem !== null
      ? `<p class="error">${e(f.problem)}</p>`
      : f.entries.length === 0
        ? `<p>${zh ? '没有变化。' : 'Nothing changes.'}</p>`
        : `<ol class="timeline">${f.entries
            .map(
              (x) =>
                `<li>${instant(x.at, timeZone, lang)} <strong>${e(x.kind)}</strong> ${e(x.text)}</li>`,
            )
            .join('')}</ol>`;
  return `<section><h2>${e(title)}</h2><p>${e(note)}</p>${body}</section>`;
}
