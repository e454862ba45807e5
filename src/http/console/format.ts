import { formatMoney } from '../../domain/money';
import { escapeHtml } from '../../notify/templates';

/**
 * Formatting for the console's pages: money in the account's currency, instants in the account's
 * zone with the UTC instant on hover (title), durations, bars; en or zh-CN by Accept-Language.
 */

export type UiLang = 'en' | 'zh-CN';

export const e = (v: string | number | null | undefined): string =>
  escapeHtml(v === null || v === undefined ? '' : String(v));

/** The operator's language: the first of Accept-Language (by q) that is zh or en; else en. */
export function uiLang(acceptLanguage: string | undefined): UiLang {
  const tags = (acceptLanguage ?? '')
    .split(',')
    .map((part, i) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([\d.]+)/.exec(p)?.[1]).find((x) => x !== undefined);
      return { tag: tag.toLowerCase(), q: q === undefined ? 1 : Number(q), i };
    })
    .filter((t) => t.tag !== '' && t.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  for (const t of tags) {
    if (t.tag.startsWith('zh')) return 'zh-CN';
    if (t.tag.startsWith('en')) return 'en';
  }
  return 'en';
}

export function money(amountMinor: number, currency: string, lang: UiLang): string {
  return e(formatMoney({ amountMinor, currency }, lang));
}

const dateFormats = new Map<string, Intl.DateTimeFormat>();

function dateFormat(lang: UiLang, timeZone: string): Intl.DateTimeFormat {
  const key = `${lang}|${timeZone}`;
  let f = dateFormats.get(key);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat(lang, {
        timeZone,
        dateStyle: 'medium',
        timeStyle: 'medium',
        hourCycle: 'h23',
      });
    } catch {
      f = new Intl.DateTimeFormat(lang, {
        timeZone: 'UTC',
        dateStyle: 'medium',
        timeStyle: 'medium',
      });
    }
    if (dateFormats.size >= 500) dateFormats.clear();
    dateFormats.set(key, f);
  }
  return f;
}

/** An instant in the account's zone; the UTC instant on hover. */
export function instant(at: Date | null, timeZone: string, lang: UiLang): string {
  if (at === null) return '—';
  return `<time datetime="${at.toISOString()}" title="${at.toISOString()} UTC">${e(dateFormat(lang, timeZone).format(at))}</time>`;
}

/** A span of milliseconds for people: "2 d 3 h", "5 min 10 s". */
export function span(ms: number, lang: UiLang): string {
  const zh = lang === 'zh-CN';
  const units: [number, string][] = [
    [86_400_000, zh ? '天' : ' d'],
    [3_600_000, zh ? '小时' : ' h'],
    [60_000, zh ? '分' : ' min'],
    [1_000, zh ? '秒' : ' s'],
  ];
  let rest = Math.max(0, Math.round(ms));
  const parts: string[] = [];
  for (const [size, name] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 && parts.length < 2) parts.push(`${n}${name}`);
  }
  return parts.length === 0 ? (zh ? '0秒' : '0 s') : parts.join(zh ? '' : ' ');
}

/** Time left until `at`, or how long ago it passed. */
export function countdown(at: Date, now: Date, lang: UiLang): string {
  const ms = at.getTime() - now.getTime();
  const zh = lang === 'zh-CN';
  if (ms >= 0) return zh ? `剩余 ${span(ms, lang)}` : `in ${span(ms, lang)}`;
  return zh ? `已过 ${span(-ms, lang)}` : `${span(-ms, lang)} overdue`;
}

/** A horizontal bar, `value` of `max`; past the max it is drawn full and marked. */
export function bar(value: number, max: number | null, label: string): string {
  const pct = max === null || max <= 0 ? (value > 0 ? 100 : 0) : Math.min(100, (value / max) * 100);
  const over = max !== null && value > max;
  return `<div class="bar${over ? ' over' : ''}" role="img" aria-label="${e(label)}"><span style="width:${pct.toFixed(1)}%"></span></div>`;
}
