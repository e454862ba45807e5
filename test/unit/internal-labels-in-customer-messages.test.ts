import { describe, expect, it } from 'vitest';
import { decide } from '../../src/domain/decide';
import type { Decision, DecisionKind, Notice } from '../../src/domain/decisions';
import type { AccountSnapshot } from '../../src/domain/snapshot';
import { renderMessage, TEMPLATE_NAMES, type TemplateName } from '../../src/notify/templates';
import {
  T0,
  account,
  bill,
  instance,
  liveServices,
  plan,
  plusMs,
  rules,
  service,
  studio,
} from '../support/builders';

/**
 * Internal labels in customer messages: every notice the policy produces, rendered in every
 * language and locale form, must read as prose. A plan-quota alert once said "below p20" (the
 * idempotency key's label). The notices come from `decide()` itself, so a new decision kind or
 * a new param reaches this check without anyone copying params into a fixture.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const ALL_DECISION_KINDS: Record<DecisionKind, true> = {
  'open-episode': true,
  'close-episode': true,
  'set-state': true,
  'low-balance-reminder': true,
  'overdue-reminder': true,
  'suspend-services': true,
  'resume-services': true,
  'clear-released-holds': true,
  'suspend-studio': true,
  'schedule-release': true,
  'cancel-release': true,
  'release-warning': true,
  'release-studio': true,
  'plan-quota-alert': true,
  'plan-expiry-reminder': true,
  'payg-revert-notice': true,
  wake: true,
  'invalid-snapshot': true,
};

/** Machine words that are no English or Chinese a customer should read. */
const ENUM_NAMES = [
  ...Object.keys(ALL_DECISION_KINDS),
  ...TEMPLATE_NAMES.filter((t) => /[-_]/.test(t)),
  // Suspension limits, reasons, service and plan types, key effects (keys.ts).
  'no-protection',
  'still-suspended',
  'payg',
  'episode-open',
  'suspend-svc',
  'resume-svc',
  'studio-suspend',
  'release-timer',
  'plan-quota',
  'plan-expiry',
  'payg-revert',
  'lowbal',
];

/** Shapes of keys, labels and identifiers; each with what it catches. */
const KEY_LIKE: readonly [RegExp, string][] = [
  [/(?<![A-Za-z0-9])[pu]\d+(?:_\d+)?(?![A-Za-z0-9])/, 'a threshold label (p20, u500)'],
  [/-v\d+-/, 'an idempotency key version'],
  [/(?<![A-Za-z0-9])e\d+(?![A-Za-z0-9])/, 'an episode label (e1)'],
  [/\b[a-z]+_[a-z0-9_]+\b/, 'a snake_case name (overdue_hold, a column)'],
  [/\b[a-z]+[A-Z][A-Za-z]*\b/, 'a camelCase name (a param)'],
  [/\b(?:undefined|null|NaN|true|false)\b|\[object /, 'a value printed raw'],
];

/** Text a customer reads: the HTML without its markup. */
function readable(m: ReturnType<typeof renderMessage>): Record<string, string> {
  const body = /<body[^>]*>([\s\S]*)<\/body>/.exec(m.html)?.[1] ?? m.html;
  return {
    subject: m.subject,
    text: m.text,
    html: body.replace(/<[^>]+>/g, ' '),
    sms: m.sms,
  };
}

const overdue = (amountMinor: number, product = 'live') =>
  bill({ id: `bill-${product}-${amountMinor}`, product, amountMinor });
const episode = { seq: 1, startedAt: plusMs(T0, -23 * HOUR) };
const onHold = studio({ status: 'suspended', overdueHold: true });

/** Snapshots that between them produce every kind of notice, with the params' variants. */
const SITUATIONS: Record<string, AccountSnapshot> = {
  'low balance': account({ availableBalanceMinor: 500 }),
  'overdue within an amount quota': account({ bills: [overdue(1_000)], services: liveServices() }),
  'overdue within a duration quota': account({
    bills: [overdue(1_000)],
    protection: { amountMinor: 5_000, durationMs: 3 * DAY },
  }),
  'suspended past the amount, another product owing': account({
    bills: [overdue(6_000), overdue(700, 'oss')],
    services: liveServices(),
  }),
  'suspended without protection': account({
    bills: [overdue(100)],
    protection: { amountMinor: null, durationMs: null },
    services: liveServices(),
  }),
  'suspended past the duration': account({
    bills: [overdue(100)],
    protection: { amountMinor: null, durationMs: HOUR },
    episode,
    lastEpisodeSeq: 1,
    enforcementState: 'protected',
    services: liveServices(),
  }),
  'studio suspended while streaming': account({
    bills: [overdue(100)],
    services: [studio()],
    studioInstances: [instance({ streaming: true })],
  }),
  'studio release warning': account({
    bills: [overdue(100)],
    episode,
    lastEpisodeSeq: 1,
    enforcementState: 'protected',
    services: [onHold],
    studioInstances: [instance({ releaseDueAt: plusMs(T0, HOUR) })],
  }),
  'studio released': account({
    bills: [overdue(100)],
    episode,
    lastEpisodeSeq: 1,
    enforcementState: 'protected',
    services: [onHold],
    studioInstances: [instance({ releaseDueAt: plusMs(T0, -60_000) })],
  }),
  'resumed, one service still held by an operator': account({
    episode,
    lastEpisodeSeq: 1,
    enforcementState: 'suspended',
    services: [
      service({ status: 'suspended', overdueHold: true }),
      service({
        id: 'svc-rec',
        kind: 'recording',
        status: 'suspended',
        overdueHold: true,
        operatorHold: true,
      }),
    ],
  }),
  'plan below 20 %': account({ plans: [plan({ usedUnits: 850 })] }),
  'plan below 5 %': account({ plans: [plan({ usedUnits: 960 })] }),
  'plan below 2.5 %': account({
    plans: [plan({ usedUnits: 980, thresholds: [{ kind: 'percent', percent: 2.5 }] })],
  }),
  'plan below an absolute threshold': account({
    plans: [plan({ usedUnits: 700, thresholds: [{ kind: 'units', units: 500 }] })],
  }),
  'plan expiring': account({ plans: [plan({ expiresAt: plusMs(T0, 12 * HOUR) })] }),
  'plan expired: pay-as-you-go': account({ plans: [plan({ expiresAt: plusMs(T0, -DAY) })] }),
  'plan used up: pay-as-you-go': account({ plans: [plan({ usedUnits: 1_000 })] }),
};

type WithNotice = Extract<Decision, { notice: Notice }>;

const notices = Object.entries(SITUATIONS).flatMap(([situation, snapshot]) =>
  decide(snapshot, T0, rules())
    .filter((d): d is WithNotice => 'notice' in d)
    .map((d) => ({ situation, decision: d })),
);

/** Rows stored before notices carried the threshold itself: their label must render as prose. */
const STORED_LABELS = ['p20', 'p2_5', 'u500'].map((threshold) => ({
  situation: `a stored row with the label ${threshold}`,
  decision: {
    kind: 'plan-quota-alert',
    key: `plan-quota-v1-acct-1-transcoding-plan-1-${threshold}`,
    notice: {
      template: 'plan-quota-low',
      channels: ['email', 'sms'],
      params: { planKind: 'transcoding', remainingUnits: 150, totalUnits: 1_000, threshold },
    },
  } as unknown as WithNotice,
}));

const LOCALES = ['en', 'en-GB', 'zh-CN', 'zh-TW'];

const cases = [...notices, ...STORED_LABELS].flatMap(({ situation, decision }) =>
  LOCALES.map((locale) => ({
    name: `${decision.kind} (${situation}) in ${locale}`,
    locale,
    decision,
  })),
);

describe('internal labels in customer messages', () => {
  it('every customer template is produced by some decision here', () => {
    const produced = new Set(notices.map((n) => n.decision.notice.template));
    const customer = TEMPLATE_NAMES.filter(
      (t): t is Exclude<TemplateName, 'operator-alert'> => t !== 'operator-alert',
    );
    expect([...produced].sort()).toEqual([...customer].sort());
  });

  it.each(cases)('$name reads without keys, labels or enum names', ({ locale, decision }) => {
    const message = renderMessage({
      template: decision.notice.template,
      locale,
      params: decision.notice.params,
      timeZone: 'Asia/Shanghai',
      topUpUrl: 'https://console.example.com/top-up',
    });
    const keyParts = decision.key.split('-').filter((p) => /\d/.test(p) || p.length > 3);
    for (const [part, text] of Object.entries(readable(message))) {
      expect(text, `${part} shows the decision's key`).not.toContain(decision.key);
      for (const [pattern, what] of KEY_LIKE) {
        expect(text, `${part} shows ${what}: ${text}`).not.toMatch(pattern);
      }
      for (const name of ENUM_NAMES) {
        expect(text, `${part} shows the enum name ${name}`).not.toMatch(
          new RegExp(`(?<![A-Za-z-])${name}(?![A-Za-z-])`),
        );
      }
      // The key's own label segment (p20, e1, u500) is caught above; this catches new ones.
      const label = keyParts.at(-1);
      if (label !== undefined && /^[a-z]+\d+$/.test(label)) {
        expect(text, `${part} shows the key label ${label}`).not.toMatch(
          new RegExp(`(?<![A-Za-z0-9])${label}(?![A-Za-z0-9])`),
        );
      }
    }
  });

  it('a plan-quota alert says the threshold as a customer reads it', () => {
    const text = (situation: string, locale: string) => {
      const found = notices.find(
        (n) => n.situation === situation && n.decision.kind === 'plan-quota-alert',
      );
      if (found === undefined) throw new Error(`no alert for ${situation}`);
      return renderMessage({
        template: 'plan-quota-low',
        locale,
        params: found.decision.notice.params,
        timeZone: 'UTC',
        topUpUrl: null,
      });
    };
    expect(text('plan below 20 %', 'en').text).toContain('150 of 1,000 left, below 20%.');
    expect(text('plan below 5 %', 'en').sms).toContain('(below 5%)');
    expect(text('plan below 20 %', 'zh-CN').text).toContain('已低于 20%');
    expect(text('plan below 2.5 %', 'en').text).toContain('below 2.5%');
    expect(text('plan below an absolute threshold', 'en').text).toContain(
      '300 of 1,000 left, below 500.',
    );
    expect(text('plan below an absolute threshold', 'zh-CN').text).toContain('已低于 500');
  });
});
