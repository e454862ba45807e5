/**
 * SMS length rules. A message is GSM-7 encoded when every character is in the GSM 03.38 basic
 * set or its extension table (extension characters take two septets), otherwise UCS-2 (UTF-16
 * code units). Single message: 160 septets / 70 code units. Concatenated messages carry a 6-byte
 * header, leaving 153 septets / 67 code units per segment; a two-unit character (GSM escape +
 * char, or a UTF-16 surrogate pair) is never split across segments, which the packing below
 * honours, so the count matches what the carrier bills.
 */

const GSM_BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXTENDED = '^{}\\[~]|€\f';

const BASIC = new Set(GSM_BASIC);
const EXTENDED = new Set(GSM_EXTENDED);

export type SmsEncoding = 'gsm7' | 'ucs2';

export const SINGLE_LIMIT: Readonly<Record<SmsEncoding, number>> = { gsm7: 160, ucs2: 70 };
export const MULTI_LIMIT: Readonly<Record<SmsEncoding, number>> = { gsm7: 153, ucs2: 67 };

export function smsEncoding(text: string): SmsEncoding {
  for (const ch of text) {
    if (!BASIC.has(ch) && !EXTENDED.has(ch)) return 'ucs2';
  }
  return 'gsm7';
}

/** Units one character takes in the encoding (septets, or UTF-16 code units). */
function unitsOf(ch: string, encoding: SmsEncoding): number {
  if (encoding === 'gsm7') return EXTENDED.has(ch) ? 2 : 1;
  return ch.length; // 2 for astral characters (surrogate pairs)
}

export interface SmsLength {
  readonly encoding: SmsEncoding;
  /** Septets (GSM-7) or UTF-16 code units (UCS-2). */
  readonly units: number;
  readonly segments: number;
}

export function smsLength(text: string): SmsLength {
  const encoding = smsEncoding(text);
  let units = 0;
  for (const ch of text) units += unitsOf(ch, encoding);
  if (units <= SINGLE_LIMIT[encoding]) return { encoding, units, segments: units === 0 ? 0 : 1 };
  // Concatenated: pack characters into segments without splitting a two-unit character.
  const per = MULTI_LIMIT[encoding];
  let segments = 1;
  let used = 0;
  for (const ch of text) {
    const u = unitsOf(ch, encoding);
    if (used + u > per) {
      segments += 1;
      used = 0;
    }
    used += u;
  }
  return { encoding, units, segments };
}

/** CJK ideographs, kana, CJK punctuation and full-width forms: a line may break around them. */
const CJK = /[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]/;

/**
 * Positions where text may be cut without splitting a word: before whitespace, and around CJK
 * characters (Chinese has no spaces; each ideograph or punctuation mark stands alone).
 */
function breakPoints(chars: readonly string[]): number[] {
  const points: number[] = [];
  for (let i = 1; i < chars.length; i += 1) {
    const prev = chars[i - 1] ?? '';
    const cur = chars[i] ?? '';
    if (/\s/.test(cur) || CJK.test(prev) || CJK.test(cur)) points.push(i);
  }
  return points;
}

/**
 * Cuts `text` at a word boundary so that it plus an ellipsis fits in `maxSegments`. Returns the
 * text unchanged when it fits. Never cuts inside a word; if no boundary fits, returns the
 * ellipsis alone rather than a broken word.
 */
export function truncateAtWord(text: string, maxSegments: number): string {
  if (smsLength(text).segments <= maxSegments) return text;
  const chars = [...text];
  const encoding = smsEncoding(text);
  const ellipsis = encoding === 'gsm7' ? '...' : '…';
  const points = breakPoints(chars).reverse();
  for (const at of points) {
    const candidate = `${chars.slice(0, at).join('').trimEnd()}${ellipsis}`;
    if (smsLength(candidate).segments <= maxSegments) return candidate;
  }
  return ellipsis;
}

/**
 * Picks the SMS text: the first variant (most complete first) that fits in one segment; else the
 * shortest variant if it fits in `maxSegments`; else the shortest cut at a word boundary.
 */
export function fitSms(variants: readonly string[], maxSegments = 3): string {
  if (variants.length === 0) throw new RangeError('fitSms needs at least one variant');
  for (const v of variants) {
    if (smsLength(v).segments <= 1) return v;
  }
  let shortest = variants[0] ?? '';
  for (const v of variants) {
    if (smsLength(v).units < smsLength(shortest).units) shortest = v;
  }
  return truncateAtWord(shortest, maxSegments);
}
