import type { BreakerStatus } from '../../adapters/db/breaker-store';
import type { ControlState, Pause } from '../../adapters/db/control-store';
import type {
  Failure,
  HourBucket,
  PendingRelease,
  StateCounts,
} from '../../adapters/db/console-queries';
import { DASHBOARD_PATH } from '../dashboard';
import { SAFETY_PATH } from '../safety-page';
import { retryForm } from './account-page';
import { countdown, e, type UiLang } from './format';
import { ACCOUNTS_PATH, CONSOLE_PATH } from './layout';
import { strings, type Strings } from './strings';

export interface FleetView {
  readonly now: Date;
  readonly counts: StateCounts;
  readonly hourly: { buckets: HourBucket[]; capped: boolean };
  readonly releases: PendingRelease[];
  readonly failures: Failure[];
  readonly control: ControlState;
  readonly pauses: Pause[];
  readonly breaker: BreakerStatus;
}

const accountLink = (id: string): string =>
  `<a href="${ACCOUNTS_PATH}/${encodeURIComponent(id)}">${e(id)}</a>`;
const utc = (at: Date): string =>
  `<time datetime="${at.toISOString()}" title="${at.toISOString()} UTC">${e(at.toISOString().replace('T', ' ').slice(0, 19))} UTC</time>`;

function countsSection(c: StateCounts, s: Strings): string {
  const capped = (n: number) => (n >= c.cap ? `≥ ${n}` : String(n));
  const good = Math.max(0, c.totalEstimate - c.protected - c.suspended - c.lowBalance);
  return `<section><h2>${e(s.accountsByState)}</h2><table class="figures">
<tr><td>${e(s.goodStanding)}</td><td class="state-active">${c.totalEstimate >= c.cap ? '~' : ''}${good}</td></tr>
<tr><td>${e(s.lowBalance)}</td><td class="state-low">${capped(c.lowBalance)}</td></tr>
<tr><td>${e(s.protected)}</td><td class="state-protected">${capped(c.protected)}</td></tr>
<tr><td>${e(s.suspended)}</td><td class="state-suspended">${capped(c.suspended)}</td></tr>
<tr><td>${e(s.releasePending)}</td><td>${capped(c.releasePending)}</td></tr></table></section>`;
}

/** Suspended (red) and resumed (green) bars per hour, as inline SVG: no script, no images. */
export function hourlyChart(buckets: readonly HourBucket[], s: Strings): string {
  const w = 14;
  const h = 120;
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.suspended, b.resumed)));
  const scale = (n: number) => Math.round((n / max) * h);
  const bars = buckets
    .map((b, i) => {
      const x = i * w + 30;
      const hs = scale(b.suspended);
      const hr = scale(b.resumed);
      const label = `${b.hour.toISOString().slice(0, 13)}:00 UTC`;
      return `<g><title>${e(label)}: ${b.suspended} ${e(s.suspendedLegend)}, ${b.resumed} ${e(s.resumedLegend)}</title><rect x="${x}" y="${h - hs + 10}" width="${w / 2 - 1}" height="${hs}" fill="#c33"/><rect x="${x + w / 2}" y="${h - hr + 10}" width="${w / 2 - 1}" height="${hr}" fill="#4a7"/></g>`;
    })
    .join('');
  const width = buckets.length * w + 40;
  const first = buckets[0]?.hour.toISOString().slice(5, 13).replace('T', ' ') ?? '';
  const last = buckets.at(-1)?.hour.toISOString().slice(5, 13).replace('T', ' ') ?? '';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${h + 40}" role="img" aria-label="${e(s.perHour)}">
<text x="0" y="18" font-size="11">${max}</text><text x="0" y="${h + 10}" font-size="11">0</text>
<line x1="28" y1="${h + 10}" x2="${width}" y2="${h + 10}" stroke="#999"/>${bars}
<text x="30" y="${h + 28}" font-size="11">${e(first)}h UTC</text><text x="${width - 90}" y="${h + 28}" font-size="11">${e(last)}h UTC</text></svg>
<p><span style="color:#c33">■</span> ${e(s.suspendedLegend)} &nbsp; <span style="color:#4a7">■</span> ${e(s.resumedLegend)}</p>`;
}

function releasesSection(v: FleetView, s: Strings, lang: UiLang): string {
  const rows = v.releases
    .map(
      (r) =>
        `<tr><td>${accountLink(r.accountId)}</td><td><code>${e(r.instanceId)}</code> ${e(r.name)}</td><td>${utc(r.releaseDueAt)}</td><td>${e(countdown(r.releaseDueAt, v.now, lang))}</td></tr>`,
    )
    .join('');
  return `<section><h2>${e(s.pendingReleases)}</h2>${rows === '' ? `<p>${e(s.none)}</p>` : `<table>${rows}</table>`}</section>`;
}

function failuresSection(v: FleetView, s: Strings, canAct: boolean): string {
  const rows = v.failures
    .map(
      (f) =>
        `<tr><td>${utc(f.at)}</td><td>${accountLink(f.accountId)}</td><td>${e(f.what)}: ${e(f.kind)}</td><td class="st-${e(f.status)}">${e(f.status)}</td><td><code>${e(f.key)}</code></td><td>${e(f.lastError ?? '')}</td><td>${canAct ? retryForm(f.accountId, f.key, s) : ''}</td></tr>`,
    )
    .join('');
  return `<section><h2>${e(s.failures)}</h2>${rows === '' ? `<p>${e(s.noFailures)}</p>` : `<table>${rows}</table>`}</section>`;
}

function safetySection(v: FleetView, s: Strings): string {
  const pauses = v.pauses.length === 0 ? s.none : v.pauses.map((p) => p.kind).join(', ');
  const b = v.breaker;
  const breaker = !b.enabled ? 'off' : b.tripped ? 'TRIPPED' : 'closed';
  return `<section><h2>${e(s.safetyState)}</h2><table class="figures">
<tr><td>${e(s.mode)}</td><td>${e(v.control.mode)}</td></tr>
<tr><td>${e(s.pauses)}</td><td>${e(pauses)}</td></tr>
<tr><td>${e(s.breaker)}</td><td>${e(breaker)}${b.heldCount > 0 ? ` — ${b.heldCount} held` : ''}</td></tr></table>
<p><a href="${SAFETY_PATH}">${e(s.safety)}</a> · <a href="${DASHBOARD_PATH}">${e(s.queues)}</a></p></section>`;
}

export function renderOverview(v: FleetView, lang: UiLang, canAct: boolean): string {
  const s = strings(lang);
  return `<h1>${e(s.overview)}</h1>
<form method="get" action="${ACCOUNTS_PATH}"><input name="q" size="40" placeholder="${e(s.searchLabel)}"> <button>${e(s.searchButton)}</button></form>
${countsSection(v.counts, s)}${safetySection(v, s)}
<section><h2>${e(s.perHour)}</h2>${hourlyChart(v.hourly.buckets, s)}${v.hourly.capped ? '<p>(capped)</p>' : ''}</section>
${releasesSection(v, s, lang)}${failuresSection(v, s, canAct)}
<p><a href="${CONSOLE_PATH}">↻</a></p>`;
}
