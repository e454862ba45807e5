import { DateTime } from 'luxon';
import { z } from 'zod';
import { CURRENCY_RE } from '../domain/formats';
import { formatMoney } from '../domain/money';
import { fitSms } from './sms-length';

/**
 * Message templates: pure functions of (template, locale, params, zone). Params are the JSON the
 * evaluation stored in `notifications.params` (amounts as integer minor units plus `currency`,
 * instants as ISO strings, lists as arrays); they are validated here because the row is input
 * like any other. English and Simplified Chinese; any `zh*` locale gets Chinese, anything else
 * English. Amounts are formatted in the account's currency and locale, instants in its zone.
 */

export const TEMPLATE_NAMES = [
  'low-balance',
  'overdue-reminder',
  'suspended',
  'resumed',
  'studio-suspended',
  'studio-release-warning',
  'studio-released',
  'plan-quota-low',
  'plan-expiring',
  'plan-reverted',
  'operator-alert',
] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

export type Lang = 'en' | 'zh';

export interface RenderInput {
  readonly template: string;
  /** BCP 47 tag of the account. */
  readonly locale: string;
  readonly params: unknown;
  /** IANA zone of the account. */
  readonly timeZone: string;
  /** Where to top up / pay; null: "in the console". */
  readonly topUpUrl: string | null;
}

export interface RenderedMessage {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  /** Fits one SMS segment where the content allows; never cut mid-word. */
  readonly sms: string;
}

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

const minor = z.number().int().refine(Number.isSafeInteger, 'must be a safe integer');
const currency = z.string().regex(CURRENCY_RE);
const iso = z.string().refine((s) => DateTime.fromISO(s, { zone: 'utc' }).isValid, 'ISO instant');
const names = z.array(z.string().min(1).max(200)).max(100);

/** A stored key label ("p20", "p2_5", "u500"; see thresholdLabel) as the threshold it names. */
function labelToLimit(label: string): { kind: 'percent' | 'units'; value: number } {
  const value = Number(label.slice(1).replace('_', '.'));
  return { kind: label.startsWith('p') ? 'percent' : 'units', value };
}

const schemas = {
  'low-balance': z.object({ currency, balanceMinor: minor, thresholdMinor: minor }),
  'overdue-reminder': z.object({
    currency,
    overdueMinor: minor,
    protectionAmountMinor: minor.optional(),
    protectionEndsAt: iso.optional(),
  }),
  suspended: z.object({
    currency,
    overdueMinor: minor,
    limit: z.enum(['amount', 'duration', 'no-protection', 'still-suspended']).optional(),
    products: names.default([]),
    otherProducts: names.default([]),
  }),
  resumed: z.object({
    resumed: z.number().int().min(0).default(0),
    stillHeldByOperator: z.number().int().min(0).default(0),
  }),
  'studio-suspended': z.object({
    currency,
    overdueMinor: minor,
    releaseAt: iso,
    streamingStudios: names.default([]),
  }),
  'studio-release-warning': z.object({
    currency,
    overdueMinor: minor,
    studio: z.string().min(1).max(200),
    releaseAt: iso,
  }),
  'studio-released': z.object({
    currency,
    overdueMinor: minor.optional(),
    studio: z.string().min(1).max(200),
  }),
  'plan-quota-low': z
    .object({
      planKind: z.string().min(1).max(64),
      remainingUnits: z.number().int().min(0),
      totalUnits: z.number().int().min(0),
      /** The crossed threshold: a percentage of the plan set's total, or an amount of units. */
      thresholdPercent: z.number().positive().max(100).optional(),
      thresholdUnits: z.number().int().min(0).optional(),
      /** Rows written before those two: the idempotency key's label, "p20" or "u500". */
      threshold: z
        .string()
        .regex(/^[pu]\d{1,9}(?:_\d{1,9})?$/, 'a threshold label such as p20 or u500')
        .optional(),
    })
    .transform((p, ctx) => {
      const { threshold, thresholdPercent, thresholdUnits, ...rest } = p;
      const limit =
        thresholdPercent !== undefined
          ? { kind: 'percent' as const, value: thresholdPercent }
          : thresholdUnits !== undefined
            ? { kind: 'units' as const, value: thresholdUnits }
            : threshold !== undefined
              ? labelToLimit(threshold)
              : null;
      if (limit === null) {
        ctx.addIssue({ code: 'custom', message: 'thresholdPercent or thresholdUnits is required' });
        return z.NEVER;
      }
      return { ...rest, limit };
    }),
  'plan-expiring': z.object({
    planKind: z.string().min(1).max(64),
    planId: z.string().min(1).max(64),
    expiresAt: iso,
    remainingUnits: z.number().int().min(0),
  }),
  'plan-reverted': z.object({
    planKind: z.string().min(1).max(64),
    planId: z.string().min(1).max(64),
    reason: z.enum(['expired', 'depleted']),
  }),
  'operator-alert': z.object({
    alert: z.string().min(1).max(80),
    summary: z.string().min(1).max(300),
    detail: z.string().max(4000).optional(),
    at: iso.optional(),
  }),
} satisfies Record<TemplateName, z.ZodType>;

type Params<N extends TemplateName> = z.output<(typeof schemas)[N]>;

export function isTemplateName(name: string): name is TemplateName {
  return (TEMPLATE_NAMES as readonly string[]).includes(name);
}

export function langOf(locale: string): Lang {
  return /^zh(\b|[-_])/i.test(locale) ? 'zh' : 'en';
}

/** A paragraph: plain text, a bulleted list, or a link line. */
type Block =
  string | { readonly list: readonly string[] } | { readonly link: string; label: string };

interface Draft {
  readonly subject: string;
  readonly blocks: readonly Block[];
  /** SMS candidates, most complete first. */
  readonly sms: readonly string[];
}

const MONEY_CACHE = new Map<string, string>();

/** Formatting helpers bound to one account. */
class Fmt {
  constructor(
    readonly lang: Lang,
    private readonly locale: string,
    private readonly zone: string,
  ) {}

  money(amountMinor: number, code: string): string {
    const locale = this.intlLocale();
    const key = `${amountMinor} ${code} ${locale}`;
    let text = MONEY_CACHE.get(key);
    if (text === undefined) {
      text = formatMoney({ amountMinor, currency: code }, locale);
      // Bounded: formatting builds Intl formatters, the hot cost of a render at 1,000/s.
      if (MONEY_CACHE.size >= 10_000) MONEY_CACHE.clear();
      MONEY_CACHE.set(key, text);
    }
    return text;
  }

  /** An instant in the account's zone, with the zone's short name so it is unambiguous. */
  instant(isoText: string): string {
    const dt = DateTime.fromISO(isoText, { zone: this.zone }).setLocale(this.intlLocale());
    return dt.toLocaleString({ ...DateTime.DATETIME_MED, timeZoneName: 'short' });
  }

  /** Shorter form for SMS: date and time without the year. */
  shortInstant(isoText: string): string {
    const dt = DateTime.fromISO(isoText, { zone: this.zone }).setLocale(this.intlLocale());
    return this.lang === 'zh'
      ? dt.toFormat('M月d日 HH:mm')
      : dt.toLocaleString({ month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  list(items: readonly string[]): string {
    if (this.lang === 'zh') return items.join('、');
    return new Intl.ListFormat('en', { type: 'conjunction' }).format(items);
  }

  integer(n: number): string {
    return new Intl.NumberFormat(this.intlLocale()).format(n);
  }

  /** `percent` (20 for 20 %) as the locale writes a percentage: "20%", "20 %", "2.5%". */
  percent(percent: number): string {
    return new Intl.NumberFormat(this.intlLocale(), {
      style: 'percent',
      maximumFractionDigits: 2,
    }).format(percent / 100);
  }

  private intlLocale(): string {
    return this.lang === 'zh' && !/^zh[-_]/i.test(this.locale) ? 'zh-CN' : this.locale;
  }
}

function topUp(lang: Lang, url: string | null): Block {
  if (lang === 'zh') {
    return url === null ? '请登录控制台充值。' : { link: url, label: '立即充值：' };
  }
  return url === null ? 'Top up in the console.' : { link: url, label: 'Top up now: ' };
}

function topUpSms(lang: Lang, url: string | null): string {
  if (url === null) return lang === 'zh' ? '请登录控制台充值。' : 'Please top up in the console.';
  return lang === 'zh' ? `充值：${url}` : `Top up: ${url}`;
}

type Builder<N extends TemplateName> = (p: Params<N>, f: Fmt, url: string | null) => Draft;

const builders: { readonly [N in TemplateName]: Builder<N> } = {
  'low-balance': (p, f, url) => {
    const balance = f.money(p.balanceMinor, p.currency);
    const threshold = f.money(p.thresholdMinor, p.currency);
    if (f.lang === 'zh') {
      return {
        subject: `余额不足提醒：可用余额 ${balance}`,
        blocks: [
          `您的账户可用余额为 ${balance}，已低于提醒阈值 ${threshold}。`,
          '余额耗尽后将产生欠费，超出欠费保护额度后直播、录制和截图服务将被暂停。',
          topUp('zh', url),
        ],
        sms: [
          `您的账户可用余额 ${balance}，低于 ${threshold}，请及时充值，以免服务暂停。${topUpSms('zh', url)}`,
          `账户余额 ${balance}，请及时充值，以免服务暂停。`,
        ],
      };
    }
    return {
      subject: `Low balance: ${balance} available`,
      blocks: [
        `Your available balance is ${balance}, below your reminder threshold of ${threshold}.`,
        'When it runs out, usage becomes overdue, and once the overdue amount exceeds your suspension protection, live streaming, recording and screenshots are suspended.',
        topUp('en', url),
      ],
      sms: [
        `Your balance is ${balance}, below ${threshold}. Please top up to avoid suspension. ${topUpSms('en', url)}`,
        `Your balance is ${balance}. Please top up to avoid suspension.`,
      ],
    };
  },

  'overdue-reminder': (p, f, url) => {
    const overdue = f.money(p.overdueMinor, p.currency);
    const quota =
      p.protectionAmountMinor === undefined ? null : f.money(p.protectionAmountMinor, p.currency);
    const ends = p.protectionEndsAt === undefined ? null : f.instant(p.protectionEndsAt);
    if (f.lang === 'zh') {
      const limits = [
        quota === null ? null : `欠费金额超过 ${quota}`,
        ends === null ? null : `到 ${ends}`,
      ].filter((x): x is string => x !== null);
      return {
        subject: `欠费提醒：欠费 ${overdue}`,
        blocks: [
          `您的账户当前欠费 ${overdue}，服务仍在欠费保护期内正常运行。`,
          limits.length > 0
            ? `${limits.join('，或')}时保护结束，直播、录制和截图服务将被暂停（数据不会删除）。`
            : '保护结束后，直播、录制和截图服务将被暂停（数据不会删除）。',
          topUp('zh', url),
        ],
        sms: [
          `您的账户欠费 ${overdue}，${limits.length > 0 ? `${limits.join('，或')}将暂停服务` : '保护期结束后将暂停服务'}，请尽快充值。${topUpSms('zh', url)}`,
          `您的账户欠费 ${overdue}，请尽快充值以免服务暂停。`,
        ],
      };
    }
    const limits = [
      quota === null ? null : `the overdue amount exceeds ${quota}`,
      ends === null ? null : `${ends} passes`,
    ].filter((x): x is string => x !== null);
    return {
      subject: `Overdue: ${overdue} to pay`,
      blocks: [
        `Your account is overdue by ${overdue}. Your services keep running under suspension protection for now.`,
        limits.length > 0
          ? `Protection ends when ${limits.join(' or when ')}; then live streaming, recording and screenshots are suspended (no data is deleted).`
          : 'When protection ends, live streaming, recording and screenshots are suspended (no data is deleted).',
        topUp('en', url),
      ],
      sms: [
        `Your account is overdue by ${overdue}. Pay now to avoid suspension of live video. ${topUpSms('en', url)}`,
        `Your account is overdue by ${overdue}. Please pay now to avoid suspension.`,
      ],
    };
  },

  suspended: (p, f, url) => {
    const overdue = f.money(p.overdueMinor, p.currency);
    const others = p.otherProducts;
    if (f.lang === 'zh') {
      return {
        subject: `服务已暂停：欠费 ${overdue}`,
        blocks: [
          `您的账户欠费 ${overdue}，已超出欠费保护额度，直播、录制和截图服务已暂停。您的数据不会被删除。`,
          ...(others.length > 0
            ? [`欠费包括其他产品的未付账单：${f.list(others)}。所有产品的欠费合并计算。`]
            : []),
          `如何恢复：结清全部欠费 ${overdue} 后，服务将自动恢复，无需联系我们。`,
          topUp('zh', url),
        ],
        sms: [
          `您的账户欠费 ${overdue}${others.length > 0 ? `（含${f.list(others)}）` : ''}，直播服务已暂停，数据保留。结清欠费后自动恢复。${topUpSms('zh', url)}`,
          `您的账户欠费 ${overdue}，直播服务已暂停，结清欠费后自动恢复。`,
        ],
      };
    }
    return {
      subject: `Services suspended: ${overdue} overdue`,
      blocks: [
        `Your account is overdue by ${overdue}, beyond your suspension protection, so live streaming, recording and screenshots are suspended. Your data is not deleted.`,
        ...(others.length > 0
          ? [
              `The overdue amount includes unpaid bills of other products: ${f.list(others)}. Overdue bills of every product count together.`,
            ]
          : []),
        `How to resume: pay the full overdue amount of ${overdue}. Your services resume automatically; you do not need to contact us.`,
        topUp('en', url),
      ],
      sms: [
        `Live video suspended: ${overdue} overdue${others.length > 0 ? ` (incl. ${f.list(others)})` : ''}. Data kept. Pay in full to resume automatically. ${topUpSms('en', url)}`,
        `Live video suspended: ${overdue} overdue. Pay in full to resume automatically.`,
      ],
    };
  },

  resumed: (p, f) => {
    const held = p.stillHeldByOperator;
    if (f.lang === 'zh') {
      return {
        subject: '服务已恢复',
        blocks: [
          '感谢您的付款。您的欠费已结清，因欠费暂停的服务已恢复。',
          ...(held > 0
            ? [`另有 ${f.integer(held)} 项服务因其他原因仍处于暂停状态，请联系客服。`]
            : []),
        ],
        sms: [
          `感谢付款，欠费已结清，服务已恢复。${held > 0 ? `${f.integer(held)} 项服务因其他原因仍暂停，请联系客服。` : ''}`,
        ],
      };
    }
    return {
      subject: 'Your services have resumed',
      blocks: [
        'Thank you for your payment. Your account is no longer overdue and the services suspended for overdue have resumed.',
        ...(held > 0
          ? [
              `${f.integer(held)} service${held === 1 ? ' remains' : 's remain'} suspended for another reason; please contact support.`,
            ]
          : []),
      ],
      sms: [
        `Thank you, your account is paid up and your services have resumed.${held > 0 ? ` ${f.integer(held)} held for another reason: contact support.` : ''}`,
        'Thank you, your account is paid up and your services have resumed.',
      ],
    };
  },

  'studio-suspended': (p, f, url) => {
    const overdue = f.money(p.overdueMinor, p.currency);
    const release = f.instant(p.releaseAt);
    const streaming = p.streamingStudios;
    if (f.lang === 'zh') {
      return {
        subject: `导播台已暂停：欠费 ${overdue}`,
        blocks: [
          `您的账户欠费 ${overdue}，按时长计费的导播台已暂停。`,
          ...(streaming.length > 0
            ? ['以下导播台仍在推流，推流会继续产生费用，请立即停止：', { list: streaming }]
            : []),
          `若在 ${release} 前未结清欠费，导播台实例将被释放，释放后无法恢复。`,
          topUp('zh', url),
        ],
        sms: [
          `导播台已因欠费 ${overdue} 暂停${streaming.length > 0 ? `，${f.list(streaming)} 仍在推流计费，请立即停止` : ''}。${f.shortInstant(p.releaseAt)} 前未结清将释放实例。`,
          `导播台已因欠费暂停${streaming.length > 0 ? '，仍在推流计费，请立即停止' : ''}。${f.shortInstant(p.releaseAt)} 前未结清将释放。`,
        ],
      };
    }
    return {
      subject: `Production studio suspended: ${overdue} overdue`,
      blocks: [
        `Your account is overdue by ${overdue}, so your production studio on a duration plan is suspended.`,
        ...(streaming.length > 0
          ? [
              'These studios are still streaming, which keeps billing. Please stop them now:',
              { list: streaming },
            ]
          : []),
        `Unless the overdue amount is paid by ${release}, the studio instances are released. A release is final.`,
        topUp('en', url),
      ],
      sms: [
        `Studio suspended, ${overdue} overdue.${streaming.length > 0 ? ` Still streaming and billing: ${f.list(streaming)}. Stop it now.` : ''} Released ${f.shortInstant(p.releaseAt)} unless paid.`,
        `Studio suspended for overdue.${streaming.length > 0 ? ' A studio is still streaming and billing: stop it.' : ''} Released ${f.shortInstant(p.releaseAt)} unless paid.`,
      ],
    };
  },

  'studio-release-warning': (p, f, url) => {
    const overdue = f.money(p.overdueMinor, p.currency);
    const release = f.instant(p.releaseAt);
    if (f.lang === 'zh') {
      return {
        subject: `导播台即将释放：${p.studio}`,
        blocks: [
          `导播台“${p.studio}”将于 ${release} 释放，释放后无法恢复。`,
          `结清全部欠费 ${overdue} 即可取消释放。`,
          topUp('zh', url),
        ],
        sms: [
          `导播台“${p.studio}”将于 ${f.shortInstant(p.releaseAt)} 释放且无法恢复，结清欠费 ${overdue} 可取消。`,
          `导播台将于 ${f.shortInstant(p.releaseAt)} 释放，结清欠费 ${overdue} 可取消。`,
        ],
      };
    }
    return {
      subject: `Studio release at ${release}: ${p.studio}`,
      blocks: [
        `Your production studio "${p.studio}" will be released at ${release}. A release is final.`,
        `Pay the full overdue amount of ${overdue} before then to keep it.`,
        topUp('en', url),
      ],
      sms: [
        `Studio "${p.studio}" will be released ${f.shortInstant(p.releaseAt)} (final). Pay ${overdue} before then to keep it.`,
        `Your studio will be released ${f.shortInstant(p.releaseAt)} (final). Pay ${overdue} to keep it.`,
      ],
    };
  },

  'studio-released': (p, f) => {
    if (f.lang === 'zh') {
      return {
        subject: `导播台已释放：${p.studio}`,
        blocks: [`由于欠费未在期限内结清，导播台“${p.studio}”已释放。`],
        sms: [`由于欠费未结清，导播台“${p.studio}”已释放。`, '由于欠费未结清，导播台已释放。'],
      };
    }
    return {
      subject: `Studio released: ${p.studio}`,
      blocks: [
        `Your production studio "${p.studio}" has been released because the overdue amount was not paid in time.`,
      ],
      sms: [
        `Your studio "${p.studio}" was released because the overdue amount was not paid in time.`,
        'Your studio was released because the overdue amount was not paid in time.',
      ],
    };
  },

  'plan-quota-low': (p, f) => {
    const remaining = f.integer(p.remainingUnits);
    const total = f.integer(p.totalUnits);
    // A percentage of the total, or an amount in the plan's own unit (that of remaining/total).
    const limit = p.limit.kind === 'percent' ? f.percent(p.limit.value) : f.integer(p.limit.value);
    if (f.lang === 'zh') {
      return {
        subject: `资源包余量不足：${p.planKind}`,
        blocks: [
          `您的 ${p.planKind} 资源包剩余 ${remaining} / ${total}，已低于 ${limit}。`,
          '资源包用完后将按量计费。如需继续使用资源包，请购买新的资源包。',
        ],
        sms: [
          `您的 ${p.planKind} 资源包剩余 ${remaining}/${total}（低于 ${limit}），用完后按量计费。`,
          `您的资源包余量低于 ${limit}，用完后按量计费。`,
        ],
      };
    }
    return {
      subject: `Resource plan running low: ${p.planKind}`,
      blocks: [
        `Your ${p.planKind} resource plans have ${remaining} of ${total} left, below ${limit}.`,
        'Once they are used up, usage is billed pay-as-you-go. Buy a new plan to keep plan pricing.',
      ],
      sms: [
        `Your ${p.planKind} plan has ${remaining} of ${total} left (below ${limit}); then usage is pay-as-you-go.`,
        `Your resource plan is below ${limit}; then usage is pay-as-you-go.`,
      ],
    };
  },

  'plan-expiring': (p, f) => {
    const expires = f.instant(p.expiresAt);
    const remaining = f.integer(p.remainingUnits);
    if (f.lang === 'zh') {
      return {
        subject: `资源包即将到期：${p.planKind}`,
        blocks: [
          `您的 ${p.planKind} 资源包（${p.planId}）将于 ${expires} 到期，剩余 ${remaining}。`,
          '到期后剩余额度失效，用量按量计费。',
        ],
        sms: [
          `您的 ${p.planKind} 资源包将于 ${f.shortInstant(p.expiresAt)} 到期，剩余 ${remaining}，到期后按量计费。`,
          `您的资源包将于 ${f.shortInstant(p.expiresAt)} 到期。`,
        ],
      };
    }
    return {
      subject: `Resource plan expires ${expires}: ${p.planKind}`,
      blocks: [
        `Your ${p.planKind} resource plan ${p.planId} expires at ${expires} with ${remaining} left.`,
        'Anything left then is lost and usage is billed pay-as-you-go.',
      ],
      sms: [
        `Your ${p.planKind} plan expires ${f.shortInstant(p.expiresAt)} with ${remaining} left; then usage is pay-as-you-go.`,
        `Your resource plan expires ${f.shortInstant(p.expiresAt)}.`,
      ],
    };
  },

  'plan-reverted': (p, f) => {
    if (f.lang === 'zh') {
      const why = p.reason === 'expired' ? '已到期' : '已用完';
      return {
        subject: `${p.planKind} 已转为按量计费`,
        blocks: [
          `您的 ${p.planKind} 资源包${why}（最近购买：${p.planId}），相关用量现按量计费。`,
          '如需继续使用资源包价格，请购买新的资源包。',
        ],
        sms: [
          `您的 ${p.planKind} 资源包${why}，用量现按量计费。`,
          `资源包${why}，用量现按量计费。`,
        ],
      };
    }
    const why = p.reason === 'expired' ? 'expired' : 'been used up';
    return {
      subject: `${p.planKind} is now pay-as-you-go`,
      blocks: [
        `Your ${p.planKind} resource plans have ${why} (latest bought: ${p.planId}), so this usage is now billed pay-as-you-go.`,
        'Buy a new plan to return to plan pricing.',
      ],
      sms: [
        `Your ${p.planKind} plans have ${why}; usage is now billed pay-as-you-go.`,
        `Your resource plan has ${why}; usage is now pay-as-you-go.`,
      ],
    };
  },

  'operator-alert': (p, f) => {
    const at = p.at === undefined ? null : f.instant(p.at);
    return {
      subject: `[overdue-worker] ${p.alert}: ${p.summary}`,
      blocks: [
        p.summary,
        ...(p.detail !== undefined ? [p.detail] : []),
        ...(at !== null ? [`${f.lang === 'zh' ? '时间' : 'At'}: ${at}`] : []),
      ],
      sms: [`[overdue-worker] ${p.alert}: ${p.summary}`],
    };
  },
};

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

function toText(blocks: readonly Block[]): string {
  return blocks
    .map((b) => {
      if (typeof b === 'string') return b;
      if ('list' in b) return b.list.map((item) => `- ${item}`).join('\n');
      return `${b.label}${b.link}`;
    })
    .join('\n\n');
}

function toHtml(lang: Lang, subject: string, blocks: readonly Block[]): string {
  const body = blocks
    .map((b) => {
      if (typeof b === 'string') return `<p>${escapeHtml(b)}</p>`;
      if ('list' in b) return `<ul>${b.list.map((i) => `<li>${escapeHtml(i)}</li>`).join('')}</ul>`;
      const href = escapeHtml(b.link);
      return `<p>${escapeHtml(b.label)}<a href="${href}">${href}</a></p>`;
    })
    .join('\n');
  return [
    '<!doctype html>',
    `<html lang="${lang === 'zh' ? 'zh-CN' : 'en'}">`,
    `<head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head>`,
    `<body style="font-family:sans-serif;line-height:1.5">\n${body}\n</body>`,
    '</html>',
  ].join('\n');
}

/** The tag Intl accepts, or the language's default when the stored tag is not valid BCP 47. */
function canonicalLocale(locale: string, lang: Lang): string {
  const key = `${lang} ${locale}`;
  let tag = LOCALE_CACHE.get(key);
  if (tag === undefined) {
    try {
      tag = Intl.getCanonicalLocales(locale)[0] ?? (lang === 'zh' ? 'zh-CN' : 'en');
    } catch {
      tag = lang === 'zh' ? 'zh-CN' : 'en';
    }
    remember(LOCALE_CACHE, key, tag);
  }
  return tag;
}

/**
 * Answers per locale tag and per time zone name: a render asks the same few at up to 1,000/s,
 * and each answer costs Intl work (a zone is checked by building a formatter for it). Bounded.
 */
const LOCALE_CACHE = new Map<string, string>();
const ZONE_CACHE = new Map<string, boolean>();

function remember<V>(cache: Map<string, V>, key: string, value: V): void {
  if (cache.size >= 10_000) cache.clear();
  cache.set(key, value);
}

function validZone(zone: string): boolean {
  let valid = ZONE_CACHE.get(zone);
  if (valid === undefined) {
    valid = DateTime.fromMillis(0, { zone }).isValid;
    remember(ZONE_CACHE, zone, valid);
  }
  return valid;
}

/** Renders one message; throws TemplateError when the template or its params are invalid. */
export function renderMessage(input: RenderInput): RenderedMessage {
  const name = input.template;
  if (!isTemplateName(name)) throw new TemplateError(`unknown template '${name}'`);
  if (!validZone(input.timeZone)) {
    throw new TemplateError(`invalid time zone '${input.timeZone}'`);
  }
  const parsed = schemas[name].safeParse(input.params);
  if (!parsed.success) {
    const fields = parsed.error.issues.map(
      (i) => `${i.path.join('.') || '(params)'}: ${i.message}`,
    );
    throw new TemplateError(`invalid params for '${name}': ${fields.join('; ')}`);
  }
  const lang = langOf(input.locale);
  const fmt = new Fmt(lang, canonicalLocale(input.locale, lang), input.timeZone);
  const build = builders[name] as Builder<TemplateName>;
  const draft = build(parsed.data, fmt, input.topUpUrl);
  return {
    subject: draft.subject,
    text: toText(draft.blocks),
    html: toHtml(lang, draft.subject, draft.blocks),
    // Intl puts no-break and narrow spaces in dates and amounts; they are not GSM-7 and would
    // turn a whole SMS into UCS-2 (70 characters per segment instead of 160).
    sms: fitSms(draft.sms.map((s) => s.replace(/[\u00a0\u202f\u2009]/g, ' ').trim())),
  };
}
