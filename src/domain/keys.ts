/**
 * Deterministic idempotency keys. Each key names one effect once: it is the outbox's unique key,
 * the BullMQ job id and the provider's idempotency key. Format: `<effect>-v<version>-<parts>`.
 * Ids are restricted to [A-Za-z0-9_.-] by the schema, so keys never contain ':' (BullMQ reserves it).
 * Bump the version of an effect only when its meaning changes: a new version re-sends.
 */

import { ID_CHARS, ID_MAX_LENGTH } from './ids';

/** Key parts are id characters (any length: numbers and instants are parts too). */
const SAFE = new RegExp(`^[${ID_CHARS}]+$`);
const UNSAFE_CHAR = new RegExp(`[^${ID_CHARS}]`, 'g');

function key(effect: string, ...parts: readonly (string | number)[]): string {
  for (const part of parts) {
    const text = String(part);
    if (!SAFE.test(text)) {
      throw new RangeError(`idempotency key part ${JSON.stringify(text)} has unsafe characters`);
    }
  }
  return [effect, 'v1', ...parts].join('-');
}

const ep = (seq: number): string => `e${seq}`;

/** The key of an effect on one account, service or instance in its episode `seq`. */
const perEpisode =
  (effect: string) =>
  (subject: string, seq: number): string =>
    key(effect, subject, ep(seq));

export const keys = {
  openEpisode: perEpisode('episode-open'),
  closeEpisode: perEpisode('episode-close'),
  state: (account: string, to: string, seq: number) => key('state', account, to, ep(seq)),
  lowBalance: (account: string, period: string) => key('lowbal', account, period),
  overdueReminder: (account: string, seq: number, period: string) =>
    key('overdue-reminder', account, ep(seq), period),
  suspendNotice: perEpisode('suspend'),
  suspendService: perEpisode('suspend-svc'),
  resumeNotice: perEpisode('resume'),
  resumeService: perEpisode('resume-svc'),
  studioSuspendNotice: perEpisode('studio-suspend'),
  studioSuspendService: perEpisode('studio-suspend-svc'),
  /** The studio release itself: outbox key, control-plane job id and provider idempotency key. */
  release: perEpisode('release'),
  /** The delayed evaluation that fires at the release's due instant. */
  releaseTimer: perEpisode('release-timer'),
  releaseCancel: perEpisode('release-cancel'),
  releaseWarning: perEpisode('release-warning'),
  clearReleasedHolds: perEpisode('released-holds-clear'),
  planQuota: (account: string, planKind: string, latestPlan: string, threshold: string) =>
    key('plan-quota', account, planKind, latestPlan, threshold),
  planExpiry: (plan: string, offsetMs: number) => key('plan-expiry', plan, offsetMs),
  paygRevert: (account: string, planKind: string, latestPlan: string) =>
    key('payg-revert', account, planKind, latestPlan),
  wake: (account: string, atMs: number) => key('wake', account, atMs),
  /** The account id itself may be what is invalid, so it is made safe rather than checked. */
  invalid: (account: string, reasonCode: string) =>
    key('invalid', account.replace(UNSAFE_CHAR, '_').slice(0, ID_MAX_LENGTH) || '_', reasonCode),
} as const;

export function isSafeKeyPart(text: string): boolean {
  return SAFE.test(text);
}
