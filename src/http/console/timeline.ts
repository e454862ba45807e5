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
  /** The outbox key an operator may retry (a failed effect or message), else absent. */
  readonly retryKey?: string;
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

/** A phrase in the operator's language: English first, Simplified Chinese second. */
const say = (t: AccountTerms, en: string, zh: string): string => (t.lang === 'zh-CN' ? zh : en);

function eventText(ev: EventView, t: AccountTerms): string {
  const d = ev.detail;
  const by = ev.actor === 'daemon' ? '' : ` — ${e(ev.actor)}`;
  const why = str(d.reason) === '' ? '' : `: ${e(str(d.reason))}`;
  const svc = e(str(d.serviceId));
  const inst = e(str(d.instanceId));
  const key = `<code>${e(str(d.key))}</code>`;
  const seq = ev.episodeSeq ?? '';
  const at = (v: unknown) =>
    typeof v === 'string' ? instant(new Date(v), t.timeZone, t.lang) : '—';
  const amount = (v: unknown) => (typeof v === 'number' ? money(v, t.currency, t.lang) : '—');
  switch (ev.kind) {
    case 'service-suspended':
      return d.studio === true
        ? say(
            t,
            `studio service ${svc} suspended at once (overdue)${by}`,
            `导播台服务 ${svc} 因欠费立即停服${by}`,
          )
        : `${suspensionReason(d, t)} — ${say(t, 'service', '服务')} ${svc}${d.callControlPlane === false ? say(t, ' (already held by an operator)', '（已被运营人员冻结）') : ''}${by}`;
    case 'service-resumed':
      return say(
        t,
        `resumed: service ${svc}, nothing overdue holds it any more${by}`,
        `已恢复：服务 ${svc} 不再因欠费受限${by}`,
      );
    case 'episode-opened':
      return say(
        t,
        `overdue episode ${seq} opened (overdue since ${at(d.startedAt)})`,
        `欠费周期 #${seq} 开始（自 ${at(d.startedAt)} 起欠费）`,
      );
    case 'episode-closed':
      return say(t, `overdue episode ${seq} ended`, `欠费周期 #${seq} 结束`);
    case 'state-changed':
      return `${say(t, 'state', '状态')} ${e(str(d.from))} → ${e(str(d.to))}`;
    case 'release-scheduled':
      return say(
        t,
        `studio instance ${inst} will be released at ${at(d.dueAt)}`,
        `导播台实例 ${inst} 将于 ${at(d.dueAt)} 释放`,
      );
    case 'release-cancelled':
      return say(
        t,
        `release of studio instance ${inst} cancelled`,
        `导播台实例 ${inst} 的释放已取消`,
      );
    case 'studio-released':
      return say(
        t,
        `studio instance ${inst} released (final)`,
        `导播台实例 ${inst} 已释放（不可恢复）`,
      );
    case 'released-holds-cleared':
      return say(
        t,
        `overdue hold cleared on released service ${svc}`,
        `已释放服务 ${svc} 的欠费限制已清除`,
      );
    case 'operator-hold':
      return say(
        t,
        `operator hold placed on service ${svc}${by}${why}`,
        `运营人员冻结了服务 ${svc}${by}${why}`,
      );
    case 'operator-hold-released':
      return say(
        t,
        `operator hold released on service ${svc}${by}${why}`,
        `运营人员解除了服务 ${svc} 的冻结${by}${why}`,
      );
    case 'operator-release-now':
      return say(
        t,
        `studio instance ${inst} to be released now (was due ${at(d.scheduledFor)})${by}${why}`,
        `导播台实例 ${inst} 立即释放（原定 ${at(d.scheduledFor)}）${by}${why}`,
      );
    case 'operator-retry': {
      const before = `${e(str(d.previousStatus))}${str(d.previousError) === '' ? '' : `: ${e(str(d.previousError))}`}`;
      return say(
        t,
        `retried ${d.what === 'message' ? 'message' : 'effect'} ${key} (was ${before})${by}${why}`,
        `重试${d.what === 'message' ? '消息' : '操作'} ${key}（之前 ${before}）${by}${why}`,
      );
    }
    case 'operator-job':
      return say(
        t,
        `job ${e(str(d.job))} triggered by hand${by}`,
        `手动触发任务 ${e(str(d.job))}${by}`,
      );
    case 'effect-applied':
    case 'effect-failed':
    case 'effect-superseded': {
      const outcome = ev.kind.slice('effect-'.length);
      const word =
        t.lang === 'zh-CN'
          ? ({ applied: '已执行', failed: '失败', superseded: '无需执行' }[outcome] ?? outcome)
          : outcome;
      const error = str(d.error) === '' ? '' : `: ${e(str(d.error))}`;
      return `${say(t, 'control plane', '控制面')} ${word}: ${e(str(d.op))} ${svc}${error}`;
    }
    case 'notice-unreachable':
      return say(
        t,
        `no message sent: the customer has no usable channel (${e(str(d.template))})`,
        `未发送消息：客户没有可用的联系渠道（${e(str(d.template))}）`,
      );
    case 'notification-failed':
      return say(
        t,
        `message ${key} failed (${e(str(d.code))})${d.fallback ? `; fallback <code>${e(str(d.fallback))}</code>` : ''}`,
        `消息 ${key} 发送失败（${e(str(d.code))}）${d.fallback ? `；改用 <code>${e(str(d.fallback))}</code>` : ''}`,
      );
    case 'notification-superseded':
      return say(
        t,
        `message ${key} not sent, no longer true${why}`,
        `消息 ${key} 未发送，内容已不成立${why}`,
      );
    case 'payment-received':
      return say(
        t,
        `payment received: ${amount(d.amountMinor)}`,
        `收到付款：${amount(d.amountMinor)}`,
      );
    case 'payment-reversed':
      return say(
        t,
        `payment reversed: ${amount(d.amountMinor)}`,
        `付款被撤销：${amount(d.amountMinor)}`,
      );
    case 'topup-received':
      return say(
        t,
        `top-up received: ${amount(d.amountMinor)}`,
        `收到充值：${amount(d.amountMinor)}`,
      );
    case 'held-by-breaker':
      return say(
        t,
        `${e(str(d.decision))} held by the mass-suspension breaker (trip ${e(typeof d.tripSeq === 'number' ? d.tripSeq : '')})`,
        `${e(str(d.decision))} 被批量停服熔断器暂缓（第 ${e(typeof d.tripSeq === 'number' ? d.tripSeq : '')} 次触发）`,
      );
    case 'shadow-decision':
      return say(
        t,
        `shadow mode, not carried out: ${e(str(d.would) || str(d.decision))}`,
        `影子模式，未执行：${e(str(d.would) || str(d.decision))}`,
      );
    case 'invalid-snapshot':
      return say(
        t,
        `not evaluated: the billing data breaks the contract${why}`,
        `未评估：计费数据不符合约定${why}`,
      );
    default:
      return `${e(ev.kind)}${by} <code>${e(JSON.stringify(d)).slice(0, 300)}</code>`;
  }
}

function messageText(m: MessageView, t: AccountTerms): string {
  const provider =
    m.providerId === null
      ? ''
      : ` ${say(t, 'via', '经由')} ${e(m.providerId)}${m.messageId ? ` (id ${e(m.messageId)})` : ''}`;
  const when =
    m.deliveredAt !== null
      ? ` ${say(t, 'at', '于')} ${instant(m.deliveredAt, t.timeZone, t.lang)}`
      : m.sentAt !== null
        ? ` ${say(t, 'at', '于')} ${instant(m.sentAt, t.timeZone, t.lang)}`
        : '';
  const error = m.lastError === null ? '' : ` — ${e(m.lastError)}`;
  return `${say(t, 'message', '消息')}: ${e(m.channel)} “${e(m.template)}” <span class="st st-${e(m.status)}">${e(m.status)}</span>${provider}${when}${error}`;
}

function effectText(x: EffectView, t: AccountTerms): string {
  const p = x.payload;
  const what =
    x.kind === 'control-plane'
      ? `${e(str(p.op))} ${e(str(p.serviceId))}${p.instanceId ? ` / ${e(str(p.instanceId))}` : ''}`
      : e(x.kind);
  const last = x.lastError
    ? say(t, `, last: ${e(x.lastError)}`, `，最近一次：${e(x.lastError)}`)
    : '';
  const outcome =
    x.status === 'done'
      ? `${say(t, 'applied at', '执行于')} ${instant(x.updatedAt, t.timeZone, t.lang)}`
      : x.status === 'failed'
        ? say(
            t,
            `<strong>failed</strong> after ${x.attempts} attempts: ${e(x.lastError ?? 'no error recorded')}`,
            `<strong>失败</strong>，共尝试 ${x.attempts} 次：${e(x.lastError ?? '没有记录错误')}`,
          )
        : `${e(x.status)}${x.attempts > 0 ? say(t, ` (${x.attempts} attempts${last})`, `（尝试 ${x.attempts} 次${last}）`) : ''}`;
  return `${say(t, 'effect', '操作')}: ${e(x.kind)} ${what} — ${outcome}`;
}

export function timelineItems(
  history: { events: EventView[]; messages: MessageView[]; effects: EffectView[] },
  t: AccountTerms,
  limit: number,
): TimelineItem[] {
  return [
    ...history.events.map((ev) => ({ at: ev.at, html: eventText(ev, t) })),
    ...history.messages.map((m) => ({
      at: m.at,
      html: messageText(m, t),
      ...(m.status === 'failed' || m.status === 'undeliverable' ? { retryKey: m.dedupeKey } : {}),
    })),
    ...history.effects.map((x) => ({
      at: x.at,
      html: effectText(x, t),
      ...(x.status === 'failed' && x.kind === 'control-plane' ? { retryKey: x.key } : {}),
    })),
  ]
    .sort((a, b) => b.at.getTime() - a.at.getTime())
    .slice(0, limit);
}
