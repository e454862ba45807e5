import { ACCOUNTS_PATH, CONSOLE_PATH, DASHBOARD_PATH, SAFETY_PATH } from '../paths';
import { e, type UiLang } from './format';
import { strings } from './strings';

export { ACCOUNTS_PATH, CONSOLE_PATH };

const STYLE = `body{font:14px system-ui,sans-serif;margin:0;color:#222}
header{background:#223;color:#fff;padding:.6em 2em}header a{color:#cde;margin-right:1.2em}
main{margin:1.5em 2em;max-width:80em}table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
section{margin-bottom:2em}h2{font-size:1.15em;border-bottom:2px solid #223;padding-bottom:.2em}
.bar{display:inline-block;width:16em;height:.9em;background:#e4e8ee;vertical-align:middle;margin-right:.5em}
.bar span{display:block;height:100%;background:#4a7}.bar.over span{background:#c33}
.notice{background:#eef;padding:.5em 1em}.error{background:#fee;padding:.5em 1em}
.st-failed,.st-undeliverable,.state-suspended{color:#b00;font-weight:600}.state-protected{color:#a60;font-weight:600}.state-low{color:#a60}
.st-delivered,.st-sent,.state-active{color:#070}form.inline{display:inline}
ol.timeline{list-style:none;padding:0}ol.timeline li{padding:.35em 0;border-bottom:1px solid #eee}
ol.timeline time.when{display:inline-block;min-width:14em;color:#555}
.figures td:first-child{color:#555}code{font-size:.9em}`;

export function layout(lang: UiLang, title: string, body: string, notice?: string | null): string {
  const s = strings(lang);
  return `<!doctype html><html lang="${lang}"><head><meta charset="utf-8"><title>${e(title)} · overdue-worker</title>
<style>${STYLE}</style></head><body><header><strong>${e(s.console)}</strong> &nbsp;
<a href="${CONSOLE_PATH}">${e(s.overview)}</a><a href="${ACCOUNTS_PATH}">${e(s.search)}</a><a href="${SAFETY_PATH}">${e(s.safety)}</a><a href="${DASHBOARD_PATH}">${e(s.queues)}</a></header>
<main>${notice ?? ''}${body}</main></body></html>`;
}

export const noticeHtml = (text: string | null, error = false): string | null =>
  text === null ? null : `<p class="${error ? 'error' : 'notice'}">${e(text)}</p>`;
