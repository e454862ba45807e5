import type { EffectView, EventView, MessageView } from '../../adapters/db/console-queries';
import type { ProtectionQuota } from '../../domain/rules';
import { e, instant, money, span, type UiLang } from './format';

/**
 * The account's story in plain words, newest first: each event (decisions and operator actions)
 * with its reason, each message with channel, template, delivery status and provider id, each
 * effect with when it was applied or why it failed.
 */

export interface AccountTerms {
  readonly currency: string;
  readonly timeZone: string;
  readonly quota: ProtectionQuota;
  readonly lang: UiLang;
}

export interface TimelineItem {
  readonly at: Date;
  readonly html: string;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);

/** Why services were suspended, from a service-suspended event's cause. */
export function suspensionReason(detail: Record<string, unknown>, t: AccountTerms): string {
  const zh = t.lang === 'zh-CN';
  const cause = (detail.cause ?? {}) as Record<string, unknown>;
  const products = list(cause.products);
  const what = products.length > 0 ? ` (${e(products.join(', '))})` : '';
  const overdue =
    typeof detail.overdueMinor === 'number' ? money(detail.overdueMinor, t.currency, t.lang) : null;
  const owed =
    overdue === null ? (zh ? '欠费' : 'overdue') : zh ? `欠费 ${overdue}` : `overdue ${overdue}`;
  switch (cause.limit) {
    case 'amount': {
      const quota =
        t.quota.amountMinor === null ? '—' : money(t.quota.amountMinor, t.currency, t.lang);
      return zh
        ? `已停服：${owed} 超过保护额度 ${quota}${what}`
        : `suspended: ${owed} exceeds the protection quota of ${quota}${what}`;
    }
    case 'duration': {
      const d = t.quota.durationMs === null ? '—' : span(t.quota.durationMs, t.lang);
      return zh
        ? `已停服：${owed} 超过保护时长 ${d}${what}`
        : `suspended: ${owed} for longer than the protection period of ${d}${what}`;
    }
    case 'no-protection':
      return zh
        ? `已停服：${owed}，账户没有保护额度${what}`
        : `suspended: ${owed} and the account has no protection quota${what}`;
    default:
      return zh
        ? `已停服：保护此前已结束，${owed}${what}`
        : `suspended: protection had already ended, ${owed}${what}`;
  }
}

function eventText(ev: EventView, t: AccountTerms): string {
  const d = ev.detail;
  const by = ev.actor === 'daemon' ? '' : ` — ${e(ev.actor)}`;
  const why = str(d.reason) === '' ? '' : `: ${e(str(d.reason))}`;
  const svc = e(str(d.serviceId));
  const inst = e(str(d.instanceId));
  const at = (v: unknown) =>
    typeof v === 'string' ? instant(new Date(v), t.timeZone, t.lang) : '—';
  switch (ev.kind) {
    case 'service-suspended':
      return d.studio === true
        ? `studio service ${svc} suspended at once (overdue)${by}`
        : `${suspensionReason(d, t)} — service ${svc}${d.callControlPlane === false ? ' (already held by an operator)' : ''}${by}`;
    case 'service-resumed':
      return `resumed: service ${svc}, nothing overdue holds it any more${by}`;
    case 'episode-opened':
      return `overdue episode ${ev.episodeSeq ?? ''} opened (overdue since ${at(d.startedAt)})`;
    case 'episode-closed':
      return `overdue episode ${ev.episodeSeq ?? ''} ended`;
    case 'state-changed':
      return `state ${e(str(d.from))} → ${e(str(d.to))}`;
    case 'release-scheduled':
      return `studio instance ${inst} will be released at ${at(d.dueAt)}`;
    case 'release-cancelled':
      return `release of studio instance ${inst} cancelled`;
    case 'studio-released':
      return `studio instance ${inst} released (final)`;
    case 'operator-hold':
      return `operator hold placed on service ${svc}${by}${why}`;
    case 'operator-hold-released':
      return `operator hold released on service ${svc}${by}${why}`;
    case 'operator-release-now':
      return `studio instance ${inst} to be released now (was due ${at(d.scheduledFor)})${by}${why}`;
    case 'effect-applied':
    case 'effect-failed':
    case 'effect-superseded': {
      const outcome = ev.kind.slice('effect-'.length);
      const error = str(d.error) === '' ? '' : `: ${e(str(d.error))}`;
      return `control plane ${outcome}: ${e(str(d.op))} ${svc}${error}`;
    }
    case 'notice-unreachable':
      return `no message sent: the customer has no usable channel (${e(str(d.template))})`;
    default:
      return `${e(ev.kind)}${by} <code>${e(JSON.stringify(d)).slice(0, 300)}</code>`;
  }
}

function messageText(m: MessageView, t: AccountTerms): string {
  const provider =
    m.providerId === null
      ? ''
      : ` via ${e(m.providerId)}${m.messageId ? ` (id ${e(m.messageId)})` : ''}`;
  const when =
    m.deliveredAt !== null
      ? ` at ${instant(m.deliveredAt, t.timeZone, t.lang)}`
      : m.sentAt !== null
        ? ` at ${instant(m.sentAt, t.timeZone, t.lang)}`
        : '';
  const error = m.lastError === null ? '' : ` — ${e(m.lastError)}`;
  return `message: ${e(m.channel)} “${e(m.template)}” <span class="st st-${e(m.status)}">${e(m.status)}</span>${provider}${when}${error}`;
}

function effectText(x: EffectView, t: AccountTerms): string {
  const p = x.payload;
  const what =
    x.kind === 'control-plane'
      ? `${e(str(p.op))} ${e(str(p.serviceId))}${p.instanceId ? ` / ${e(str(p.instanceId))}` : ''}`
      : e(x.kind);
  const outcome =
    x.status === 'done'
      ? `applied at ${instant(x.updatedAt, t.timeZone, t.lang)}`
      : x.status === 'failed'
        ? `<strong>failed</strong> after ${x.attempts} attempts: ${e(x.lastError ?? 'no error recorded')}`
        : `${e(x.status)}${x.attempts > 0 ? ` (${x.attempts} attempts${x.lastError ? `, last: ${e(x.lastError)}` : ''})` : ''}`;
  return `effect: ${e(x.kind)} ${what} — ${outcome}`;
}

export function timelineItems(
  history: { events: EventView[]; messages: MessageView[]; effects: EffectView[] },
  t: AccountTerms,
  limit: number,
): TimelineItem[] {
  return [
    ...history.events.map((ev) => ({ at: ev.at, html: eventText(ev, t) })),
    ...history.messages.map((m) => ({ at: m.at, html: messageText(m, t) })),
    ...history.effects.map((x) => ({ at: x.at, html: effectText(x, t) })),
  ]
    .sort((a, b) => b.at.getTime() - a.at.getTime())
    .slice(0, limit);
}
