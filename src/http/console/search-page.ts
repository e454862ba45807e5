import type { AccountHit } from '../../adapters/db/console-queries';
import { e, money, type UiLang } from './format';
import { ACCOUNTS_PATH } from './layout';
import { strings } from './strings';

export function renderSearch(
  q: string,
  page: number,
  result: { hits: AccountHit[]; more: boolean },
  lang: UiLang,
): string {
  const s = strings(lang);
  const rows = result.hits
    .map(
      (h) =>
        `<tr><td><a href="${ACCOUNTS_PATH}/${encodeURIComponent(h.id)}">${e(h.id)}</a></td><td>${e(h.email ?? '')}</td><td>${e(h.phone ?? '')}</td><td class="state-${e(h.enforcementState)}">${e(h.enforcementState)}</td><td>${money(h.availableBalanceMinor, h.currency, lang)}</td></tr>`,
    )
    .join('');
  const link = (p: number, label: string) =>
    `<a href="${ACCOUNTS_PATH}?q=${encodeURIComponent(q)}&amp;page=${p}">${e(label)}</a>`;
  const pager = [page > 0 ? link(page - 1, s.prev) : '', result.more ? link(page + 1, s.next) : '']
    .filter((x) => x !== '')
    .join(' · ');
  const results =
    q.trim() === ''
      ? ''
      : rows === ''
        ? `<p>${e(s.noHits)}</p>`
        : `<table><tr><th>id</th><th>email</th><th>phone</th><th>${e(s.state)}</th><th>${e(s.balance)}</th></tr>${rows}</table><p>${pager}</p>`;
  return `<h1>${e(s.search)}</h1>
<form method="get" action="${ACCOUNTS_PATH}"><label>${e(s.searchLabel)}<br><input name="q" size="40" maxlength="200" value="${e(q)}" autofocus></label> <button>${e(s.searchButton)}</button></form>
${results}`;
}
