import {
  accountHistory,
  accountHoldings,
  type PlanView,
  type ServiceView,
  type StudioView,
} from '../../adapters/db/console-queries';
import type { Daemon } from '../../daemon';
import { overdueMinor, protectionBreach } from '../../domain/decide';
import type { ProtectionQuota } from '../../domain/rules';
import { loadAccount, unpaidBills, type AccountRow } from '../queries';
import { bar, countdown, e, instant, money, span, type UiLang } from './format';
import { ACCOUNTS_PATH } from './layout';
import { strings, type Strings } from './strings';
import { forecast, renderForecast, type Forecast } from './forecast';
import { timelineItems, type AccountTerms, type TimelineItem } from './timeline';

/** Rows of each kind read for one account page (services, instances, plans; timeline items). */
const HOLDINGS_SHOWN = 100;
const TIMELINE_SHOWN = 60;
const FORECAST_DAYS = 3;

export interface AccountView {
  readonly account: AccountRow;
  readonly now: Date;
  readonly overdueMinor: number;
  readonly quota: ProtectionQuota;
  readonly breach: string | null;
  readonly services: ServiceView[];
  readonly studios: StudioView[];
  readonly plans: PlanView[];
  readonly timeline: TimelineItem[];
  readonly terms: AccountTerms;
  readonly forecast: Forecast;
}

/** The account's quota: its own when custom, else the configured default (as decide sees it). */
function quotaOf(account: AccountRow, fallback: ProtectionQuota): ProtectionQuota {
  if (!account.protectionCustom) return fallback;
  return {
    amountMinor: account.protectionAmountMinor,
    durationMs:
      account.protectionDurationSeconds === null ? null : account.protectionDurationSeconds * 1000,
  };
}

export async function loadAccountView(
  daemon: Daemon,
  id: string,
  lang: UiLang,
): Promise<AccountView> {
  const { db, config } = daemon.ctx;
  const now = new Date();
  const account = await loadAccount(db, id);
  const [bills, holdings, history, next] = await Promise.all([
    unpaidBills(db, id),
    accountHoldings(db, id, HOLDINGS_SHOWN),
    accountHistory(db, id, TIMELINE_SHOWN),
    forecast(db, config.rules, id, now, FORECAST_DAYS),
  ]);
  const overdue = overdueMinor(bills, now);
  const quota = quotaOf(account, config.rules.defaultProtection);
  const started = account.episodeStartedAt;
  const terms = { currency: account.currency, timeZone: account.timeZone, quota, lang };
  return {
    account,
    now,
    overdueMinor: overdue,
    quota,
    breach:
      started === null ? null : protectionBreach(quota, overdue, now.getTime() - started.getTime()),
    ...holdings,
    timeline: timelineItems(history, terms, TIMELINE_SHOWN),
    terms,
    forecast: next,
  };
}

const act = (accountId: string, path: string, body: string): string =>
  `<form class="inline" method="post" action="${ACCOUNTS_PATH}/${encodeURIComponent(accountId)}/${path}">${body}</form>`;

function figures(v: AccountView, s: Strings): string {
  const { currency, lang, timeZone } = v.terms;
  const a = v.account;
  const m = (n: number) => money(n, currency, lang);
  const elapsed = a.episodeStartedAt === null ? 0 : v.now.getTime() - a.episodeStartedAt.getTime();
  const amountRow =
    v.quota.amountMinor === null
      ? `${m(v.overdueMinor)} (${e(s.noLimit)})`
      : `${bar(v.overdueMinor, v.quota.amountMinor, s.overdue)}${m(v.overdueMinor)} / ${m(v.quota.amountMinor)}`;
  const durationRow =
    v.quota.durationMs === null
      ? `${e(span(elapsed, lang))} (${e(s.noLimit)})`
      : `${bar(elapsed, v.quota.durationMs, s.elapsed)}${e(span(elapsed, lang))} / ${e(span(v.quota.durationMs, lang))}`;
  const noProtection = v.quota.amountMinor === null && v.quota.durationMs === null;
  const episode =
    a.episodeStartedAt === null
      ? e(s.noEpisode)
      : `#${a.episodeSeq}, ${e(s.startedAt)} ${instant(a.episodeStartedAt, timeZone, lang)}${v.breach !== null ? ` — ${e(s.protectionEnded)} <strong>${e(v.breach)}</strong>` : ''}`;
  return `<table class="figures">
<tr><td>${e(s.state)}</td><td><span class="state-${e(a.enforcementState)}">${e(a.enforcementState)}</span></td></tr>
<tr><td>${e(s.balance)}</td><td>${m(a.availableBalanceMinor)}</td></tr>
<tr><td>${e(s.quotaAmount)}</td><td>${noProtection ? `${m(v.overdueMinor)} — ${e(s.noProtection)}` : amountRow}</td></tr>
<tr><td>${e(s.quotaDuration)}</td><td>${noProtection ? e(s.noProtection) : durationRow}</td></tr>
<tr><td>${e(s.episode)}</td><td>${episode}</td></tr></table>`;
}

function servicesTable(v: AccountView, s: Strings, canAct: boolean): string {
  const id = v.account.id;
  const rows = v.services
    .map((svc) => {
      const holds =
        [svc.overdueHold ? s.overdueHold : null, svc.operatorHold ? s.operatorHold : null]
          .filter((x) => x !== null)
          .join(', ') || s.none;
      const confirm = `<input type="hidden" name="confirmAccountId" value="${e(id)}"><input type="hidden" name="serviceId" value="${e(svc.id)}">`;
      const action =
        !canAct || svc.status === 'released'
          ? ''
          : act(
              id,
              svc.operatorHold ? 'release-hold' : 'hold',
              `${confirm}<input name="reason" maxlength="500" placeholder="${e(s.reason)}"> <button>${e(svc.operatorHold ? s.releaseHold : s.hold)}</button>`,
            );
      return `<tr><td><code>${e(svc.id)}</code></td><td>${e(svc.kind)} (${e(svc.planType)})</td><td class="state-${svc.status === 'suspended' ? 'suspended' : 'active'}">${e(svc.status)}</td><td>${e(holds)}</td><td>${action}</td></tr>`;
    })
    .join('');
  return `<section><h2>${e(s.services)}</h2><table><tr><th>id</th><th>${e(s.kind)}</th><th>${e(s.status)}</th><th>${e(s.holds)}</th><th></th></tr>${rows}</table></section>`;
}

function studiosTable(v: AccountView, s: Strings, canAct: boolean): string {
  if (v.studios.length === 0) return '';
  const { timeZone, lang } = v.terms;
  const rows = v.studios
    .map((i) => {
      const release =
        i.releasedAt !== null
          ? `${e(s.released)} ${instant(i.releasedAt, timeZone, lang)}`
          : i.releaseDueAt !== null
            ? `${instant(i.releaseDueAt, timeZone, lang)} (${e(countdown(i.releaseDueAt, v.now, lang))})`
            : '—';
      const action =
        canAct && i.releasedAt === null && i.releaseDueAt !== null
          ? act(
              v.account.id,
              'release-studio',
              `<input type="hidden" name="instanceId" value="${e(i.id)}"><input name="confirmAccountId" required maxlength="200" placeholder="${e(s.typeAccountId)}"> <button>${e(s.releaseNow)}</button>`,
            )
          : '';
      return `<tr><td><code>${e(i.id)}</code></td><td>${e(i.name)}${i.streaming ? ` (${e(s.streaming)})` : ''}</td><td><code>${e(i.serviceId)}</code></td><td>${release}</td><td>${action}</td></tr>`;
    })
    .join('');
  return `<section><h2>${e(s.studios)}</h2><table><tr><th>id</th><th></th><th>service</th><th>${e(s.releaseAt)}</th><th></th></tr>${rows}</table></section>`;
}

function plansTable(v: AccountView, s: Strings): string {
  if (v.plans.length === 0) return '';
  const { timeZone, lang } = v.terms;
  const rows = v.plans
    .map((p) => {
      const left = p.totalUnits - p.usedUnits;
      const thresholds = Array.isArray(p.thresholds)
        ? (p.thresholds as { kind?: string; percent?: number; units?: number }[])
            .map((t) => (t.kind === 'percent' ? `${t.percent}%` : `${t.units}`))
            .join(', ')
        : '';
      return `<tr><td><code>${e(p.id)}</code></td><td>${e(p.kind)}</td><td>${bar(left, p.totalUnits, s.remaining)}${left} / ${p.totalUnits}</td><td>${e(thresholds)}</td><td>${instant(p.expiresAt, timeZone, lang)}</td></tr>`;
    })
    .join('');
  return `<section><h2>${e(s.plans)}</h2><table><tr><th>id</th><th>${e(s.kind)}</th><th>${e(s.remaining)}</th><th>thresholds</th><th>${e(s.expires)}</th></tr>${rows}</table></section>`;
}

/** The retry button of a failed effect or message (it posts the key and the account id). */
export function retryForm(accountId: string, key: string, s: Strings): string {
  return act(
    accountId,
    'retry',
    `<input type="hidden" name="key" value="${e(key)}"><input type="hidden" name="confirmAccountId" value="${e(accountId)}"> <button>${e(s.retry)}</button>`,
  );
}

function timelineList(v: AccountView, s: Strings, canAct: boolean): string {
  const { timeZone, lang } = v.terms;
  const items = v.timeline
    .map(
      (t) =>
        `<li><time class="when" datetime="${t.at.toISOString()}" title="${t.at.toISOString()} UTC">${instant(t.at, timeZone, lang).replace(/<[^>]+>/g, '')}</time> ${t.html}${canAct && t.retryKey !== undefined ? ` ${retryForm(v.account.id, t.retryKey, s)}` : ''}</li>`,
    )
    .join('');
  return `<section><h2>${e(s.timeline)}</h2><ol class="timeline">${items}</ol></section>`;
}

export function renderAccount(v: AccountView, canAct: boolean): string {
  const s = strings(v.terms.lang);
  const id = v.account.id;
  const actions = canAct
    ? `<section><h2>${e(s.actions)}</h2>${act(id, 'evaluate', `<button>${e(s.evaluateNow)}</button>`)}</section>`
    : '';
  return `<h1>${e(s.account)} <code>${e(id)}</code></h1>
<p>${e(v.account.currency)} · ${e(v.account.timeZone)} · ${e(v.account.locale)}</p>
${figures(v, s)}${actions}${servicesTable(v, s, canAct)}${studiosTable(v, s, canAct)}${plansTable(v, s)}${renderForecast(v.forecast, v.terms.timeZone, v.terms.lang)}${timelineList(v, s, canAct)}`;
}
