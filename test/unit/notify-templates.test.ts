import { describe, expect, it } from 'vitest';
import { fitSms, smsEncoding, smsLength, truncateAtWord } from '../../src/notify/sms-length';
import {
  langOf,
  renderMessage,
  TEMPLATE_NAMES,
  TemplateError,
  type TemplateName,
} from '../../src/notify/templates';

/** Params as the evaluation stores them (see decide.ts), one realistic set per template. */
const PARAMS: Record<TemplateName, Record<string, unknown>> = {
  'low-balance': { currency: 'USD', balanceMinor: 4250, thresholdMinor: 10000 },
  'overdue-reminder': {
    currency: 'USD',
    overdueMinor: 123456,
    protectionAmountMinor: 500000,
    protectionEndsAt: '2026-03-05T02:00:00.000Z',
  },
  suspended: {
    currency: 'USD',
    overdueMinor: 6000,
    limit: 'amount',
    products: ['live', 'oss'],
    otherProducts: ['oss'],
    causedByOtherProduct: true,
  },
  resumed: { currency: 'USD', resumed: 3, stillHeldByOperator: 1 },
  'studio-suspended': {
    currency: 'USD',
    overdueMinor: 6000,
    releaseAt: '2026-03-03T02:00:00.000Z',
    streamingStudios: ['Main stage'],
    anyStreaming: true,
  },
  'studio-release-warning': {
    currency: 'USD',
    overdueMinor: 6000,
    studio: 'Main stage',
    releaseAt: '2026-03-03T02:00:00.000Z',
  },
  'studio-released': { currency: 'USD', overdueMinor: 6000, studio: 'Main stage' },
  'plan-quota-low': {
    currency: 'USD',
    planKind: 'transcoding-minutes',
    remainingUnits: 1800,
    totalUnits: 10000,
    thresholdPercent: 20,
  },
  'plan-expiring': {
    currency: 'USD',
    planKind: 'transcoding-minutes',
    planId: 'plan-1',
    expiresAt: '2026-03-09T00:00:00.000Z',
    remainingUnits: 500,
  },
  'plan-reverted': {
    currency: 'USD',
    planKind: 'transcoding-minutes',
    planId: 'plan-1',
    reason: 'expired',
  },
  'operator-alert': { alert: 'provider-failing', summary: 'SMTP failed 20 times in a row' },
};

/** What each template must say, per language (amounts in the account's currency and locale). */
const MUST_SAY: Record<TemplateName, { en: string[]; zh: string[] }> = {
  'low-balance': { en: ['$42.50', '$100.00'], zh: ['US$42.50', '充值'] },
  'overdue-reminder': {
    en: ['$1,234.56', '$5,000.00', 'Mar 5, 2026'],
    zh: ['US$1,234.56', 'US$5,000.00', '2026年3月5日'],
  },
  suspended: { en: ['$60.00', 'oss', 'How to resume'], zh: ['US$60.00', 'oss', '如何恢复'] },
  resumed: { en: ['resumed', '1 service remains'], zh: ['已恢复', '1 项服务'] },
  'studio-suspended': {
    en: ['Main stage', 'keeps billing', 'stop them now', 'released'],
    zh: ['Main stage', '继续产生费用', '立即停止', '释放'],
  },
  'studio-release-warning': {
    en: ['Main stage', '$60.00', 'final'],
    zh: ['Main stage', 'US$60.00'],
  },
  'studio-released': { en: ['Main stage', 'released'], zh: ['Main stage', '已释放'] },
  'plan-quota-low': { en: ['1,800', '10,000', '20%'], zh: ['1,800', '10,000', '20%'] },
  'plan-expiring': { en: ['plan-1', 'Mar 9, 2026', '500'], zh: ['plan-1', '2026年3月9日'] },
  'plan-reverted': { en: ['pay-as-you-go', 'plan-1'], zh: ['按量计费', 'plan-1'] },
  'operator-alert': { en: ['SMTP failed'], zh: ['SMTP failed'] },
};

function render(template: TemplateName, locale: string, params = PARAMS[template]) {
  return renderMessage({
    template,
    locale,
    params,
    timeZone: 'Asia/Shanghai',
    topUpUrl: 'https://console.example.com/top-up',
  });
}

describe('templates', () => {
  const cases = TEMPLATE_NAMES.flatMap((template) =>
    (['en', 'zh-CN'] as const).map((locale) => ({ template, locale })),
  );

  it.each(cases)('$template in $locale: subject, text, HTML and SMS', ({ template, locale }) => {
    const m = render(template, locale);
    const lang = locale === 'en' ? 'en' : 'zh';
    for (const phrase of MUST_SAY[template][lang]) expect(m.text).toContain(phrase);
    expect(m.subject.length).toBeGreaterThan(0);
    expect(m.html).toContain(`<html lang="${lang === 'zh' ? 'zh-CN' : 'en'}">`);
    expect(m.html).toContain('</html>');
    expect(m.sms.length).toBeGreaterThan(0);
    expect(smsLength(m.sms).segments).toBe(1);
    if (lang === 'zh' && template !== 'operator-alert') expect(m.text).toMatch(/[\u4e00-\u9fff]/);
    if (lang === 'en') expect(m.text).not.toMatch(/[\u4e00-\u9fff]/);
  });

  it('instants are shown in the account zone (02:00 UTC is 10:00 in Shanghai, 21:00 in New York)', () => {
    const shanghai = render('studio-release-warning', 'en');
    expect(shanghai.text).toContain('Mar 3, 2026, 10:00 AM');
    const ny = renderMessage({
      template: 'studio-release-warning',
      locale: 'en',
      params: PARAMS['studio-release-warning'],
      timeZone: 'America/New_York',
      topUpUrl: null,
    });
    expect(ny.text).toContain('Mar 2, 2026, 9:00 PM');
    expect(ny.text).toContain('EST');
  });

  it('amounts follow the currency: JPY has no minor digits, KWD three', () => {
    const jpy = render('low-balance', 'en', {
      currency: 'JPY',
      balanceMinor: 4250,
      thresholdMinor: 10000,
    });
    expect(jpy.text).toContain('¥4,250');
    const kwd = render('low-balance', 'en', {
      currency: 'KWD',
      balanceMinor: 4250,
      thresholdMinor: 10000,
    });
    expect(kwd.text).toContain('4.250');
  });

  it('names the other product only when another product caused the suspension', () => {
    const own = render('suspended', 'en', {
      ...PARAMS.suspended,
      otherProducts: [],
      products: ['live'],
    });
    expect(own.text).not.toContain('other products');
    expect(render('suspended', 'en').text).toContain('other products: oss');
  });

  it('studio suspension without streaming studios does not ask to stop one', () => {
    const m = render('studio-suspended', 'en', {
      ...PARAMS['studio-suspended'],
      streamingStudios: [],
    });
    expect(m.text).not.toContain('stop them');
  });

  it('escapes HTML in parameters', () => {
    const m = render('studio-released', 'en', { currency: 'USD', studio: '<script>x</script>' });
    expect(m.html).toContain('&lt;script&gt;x&lt;/script&gt;');
    expect(m.html).not.toContain('<script>');
  });

  it('without a top-up URL the notices point at the console', () => {
    const m = renderMessage({
      template: 'low-balance',
      locale: 'en',
      params: PARAMS['low-balance'],
      timeZone: 'UTC',
      topUpUrl: null,
    });
    expect(m.text).toContain('Top up in the console.');
    expect(m.html).not.toContain('<a ');
  });

  const bad: { name: string; template: string; params: unknown; timeZone?: string }[] = [
    { name: 'unknown template', template: 'nope', params: {} },
    {
      name: 'float money',
      template: 'low-balance',
      params: { currency: 'USD', balanceMinor: 1.5, thresholdMinor: 1 },
    },
    {
      name: 'missing currency',
      template: 'low-balance',
      params: { balanceMinor: 1, thresholdMinor: 1 },
    },
    {
      name: 'bad instant',
      template: 'studio-release-warning',
      params: { ...PARAMS['studio-release-warning'], releaseAt: 'soon' },
    },
    {
      name: 'bad zone',
      template: 'low-balance',
      params: PARAMS['low-balance'],
      timeZone: 'Mars/Olympus',
    },
  ];
  it.each(bad)('refuses $name with a TemplateError', ({ template, params, timeZone }) => {
    expect(() =>
      renderMessage({
        template,
        locale: 'en',
        params,
        timeZone: timeZone ?? 'UTC',
        topUpUrl: null,
      }),
    ).toThrow(TemplateError);
  });

  it.each([
    ['zh-CN', 'zh'],
    ['zh', 'zh'],
    ['zh-Hans-SG', 'zh'],
    ['en', 'en'],
    ['en-GB', 'en'],
    ['fr', 'en'],
  ] as const)('locale %s renders in %s', (locale, lang) => {
    expect(langOf(locale)).toBe(lang);
  });
});

describe('SMS length', () => {
  const cases: {
    name: string;
    text: string;
    encoding: 'gsm7' | 'ucs2';
    units: number;
    segments: number;
  }[] = [
    {
      name: '160 GSM-7 chars: one segment',
      text: 'a'.repeat(160),
      encoding: 'gsm7',
      units: 160,
      segments: 1,
    },
    {
      name: '161 GSM-7 chars: two of 153',
      text: 'a'.repeat(161),
      encoding: 'gsm7',
      units: 161,
      segments: 2,
    },
    {
      name: '306 GSM-7 chars: two',
      text: 'a'.repeat(306),
      encoding: 'gsm7',
      units: 306,
      segments: 2,
    },
    {
      name: '307 GSM-7 chars: three',
      text: 'a'.repeat(307),
      encoding: 'gsm7',
      units: 307,
      segments: 3,
    },
    {
      name: 'extension chars count twice',
      text: '€'.repeat(80),
      encoding: 'gsm7',
      units: 160,
      segments: 1,
    },
    {
      name: '€ past 160 septets',
      text: `${'a'.repeat(159)}€`,
      encoding: 'gsm7',
      units: 161,
      segments: 2,
    },
    {
      name: 'escape pair never split',
      text: `${'a'.repeat(152)}€${'a'.repeat(10)}`,
      encoding: 'gsm7',
      units: 164,
      segments: 2,
    },
    {
      name: '70 UCS-2 chars: one',
      text: '中'.repeat(70),
      encoding: 'ucs2',
      units: 70,
      segments: 1,
    },
    {
      name: '71 UCS-2 chars: two of 67',
      text: '中'.repeat(71),
      encoding: 'ucs2',
      units: 71,
      segments: 2,
    },
    {
      name: '134 UCS-2: two, 135: three',
      text: '中'.repeat(135),
      encoding: 'ucs2',
      units: 135,
      segments: 3,
    },
    {
      name: 'one non-GSM char makes it UCS-2',
      text: `${'a'.repeat(69)}…`,
      encoding: 'ucs2',
      units: 70,
      segments: 1,
    },
    {
      name: 'emoji takes two UCS-2 units',
      text: '😀'.repeat(35),
      encoding: 'ucs2',
      units: 70,
      segments: 1,
    },
  ];
  it.each(cases)('$name', ({ text, encoding, units, segments }) => {
    expect(smsEncoding(text)).toBe(encoding);
    expect(smsLength(text)).toEqual({ encoding, units, segments });
  });

  it('fitSms keeps the most complete variant that fits one segment', () => {
    const long = `${'word '.repeat(40)}end`;
    expect(fitSms([long, 'short one'])).toBe('short one');
    expect(fitSms(['fits', 'short'])).toBe('fits');
  });

  it('never cuts mid-word when a message must be shortened (Latin)', () => {
    const text = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
    const cut = truncateAtWord(text, 1);
    expect(smsLength(cut).segments).toBe(1);
    expect(cut.endsWith('...')).toBe(true);
    const words = cut.slice(0, -3).split(' ');
    for (const w of words) expect(w).toMatch(/^word\d+$/);
    expect(text.startsWith(cut.slice(0, -3))).toBe(true);
    // The next word would not have fitted.
    expect(smsLength(`${cut.slice(0, -3)} ${text.split(' ')[words.length]}...`).segments).toBe(2);
  });

  it('cuts Chinese between characters, never inside a Latin word or number', () => {
    const text = `${'欠费提醒'.repeat(20)}abcdefghij`;
    const cut = truncateAtWord(text, 1);
    expect(smsLength(cut).segments).toBe(1);
    expect(cut.endsWith('…')).toBe(true);
    expect(cut).not.toMatch(/[a-j]…$/);
    const mixed = `${'中'.repeat(60)} 1234567890123`;
    expect(truncateAtWord(mixed, 1)).toBe(`${'中'.repeat(60)}…`);
  });

  it('a shortened message that must span segments stays within the limit', () => {
    const text = Array.from({ length: 200 }, (_, i) => `w${i}`).join(' ');
    const out = fitSms([text], 2);
    expect(smsLength(out).segments).toBe(2);
    expect(out.endsWith('...')).toBe(true);
  });
});
