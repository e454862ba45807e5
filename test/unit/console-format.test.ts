import { describe, expect, it } from 'vitest';
import { likePrefix } from '../../src/adapters/db/console-queries';
import { bar, countdown, instant, span, uiLang } from '../../src/http/console/format';

describe('console formatting', () => {
  it('follows Accept-Language by preference, zh of any region as zh-CN, else en', () => {
    expect(uiLang(undefined)).toBe('en');
    expect(uiLang('zh-CN,zh;q=0.9,en;q=0.8')).toBe('zh-CN');
    expect(uiLang('zh-TW')).toBe('zh-CN');
    expect(uiLang('en;q=0.5, zh;q=0.9')).toBe('zh-CN');
    expect(uiLang('fr-FR, en;q=0.3, zh;q=0.2')).toBe('en');
    expect(uiLang('zh;q=0')).toBe('en');
  });

  it('shows an instant in the account zone, with the UTC instant on hover', () => {
    const at = new Date('2026-03-01T16:30:00Z');
    const html = instant(at, 'Asia/Shanghai', 'en');
    expect(html).toContain('title="2026-03-01T16:30:00.000Z UTC"');
    expect(html).toContain('Mar 2, 2026, 00:30:00');
    expect(instant(null, 'UTC', 'en')).toBe('—');
  });

  it('writes spans and countdowns in both languages', () => {
    expect(span(3 * 86_400_000 + 3_600_000 + 5_000, 'en')).toBe('3 d 1 h');
    expect(span(90_000, 'zh-CN')).toBe('1分30秒');
    const now = new Date('2026-01-01T00:00:00Z');
    expect(countdown(new Date('2026-01-01T02:00:00Z'), now, 'en')).toBe('in 2 h');
    expect(countdown(new Date('2025-12-31T23:59:00Z'), now, 'en')).toBe('1 min overdue');
  });

  it('draws a bar full and marked past its limit', () => {
    expect(bar(50, 100, 'x')).toContain('width:50.0%');
    expect(bar(150, 100, 'x')).toContain('class="bar over"');
    expect(bar(150, 100, 'x')).toContain('width:100.0%');
  });

  it('escapes LIKE wildcards so a search is a literal prefix', () => {
    expect(likePrefix('a_b%c\\')).toBe('a\\_b\\%c\\\\%');
  });
});
