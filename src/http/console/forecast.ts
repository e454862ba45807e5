import { loadAccountSnapshots } from '../../adapters/db/account-snapshot';
import type { Db } from '../../adapters/db/client';
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
  return {
    problem: null,
    entries: run.timeline
      .filter((x) => x.decision.kind !== 'wake')
      .slice(0, SHOWN)
      .map((x) => ({ at: x.at, kind: x.decision.kind, text: describeDecision(x.decision) })),
  };
}

export function renderForecast(f: Forecast, timeZone: string, lang: UiLang): string {
  const zh = lang === 'zh-CN';
  const title = zh
    ? '未来 3 天（策略模拟，假设不付款）'
    : 'Next 3 days (policy simulator, no payment)';
  const note = zh
    ? '从现在起每小时及每个定时点评估；已执行过的决定不会被守护进程重复执行（相同键）。'
    : 'Evaluated now, hourly and at every timer; a decision already carried out is not repeated by the daemon (same key).';
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
