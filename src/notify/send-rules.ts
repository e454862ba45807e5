import { nextSmsSendInstant } from '../domain/quiet-hours';
import type { QuietHours } from '../domain/rules';
import type { Channel } from '../domain/snapshot';
import { renderMessage, TemplateError, type RenderedMessage } from './templates';

/** Pure rules of sending one notification: final statuses, send instant, the one fallback. */

export const FALLBACK_SUFFIX = '-fallback';

export const FINAL_NOTIFICATION_STATUSES = [
  'sent',
  'delivered',
  'failed',
  'undeliverable',
  'superseded',
] as const;

export function isFinalNotification(status: string): boolean {
  return (FINAL_NOTIFICATION_STATUSES as readonly string[]).includes(status);
}

/** The outbox status that matches a final notification status. */
export function outboxStatusOf(status: string): 'done' | 'failed' | 'superseded' {
  return status === 'failed' || status === 'superseded' ? status : 'done';
}

/** Earliest instant a message may go to an account (quiet hours for SMS), never before `notBefore`. */
export function earliestSend(
  channel: Channel,
  notBefore: Date,
  now: Date,
  zone: string,
  quiet: QuietHours,
): Date {
  const start = notBefore > now ? notBefore : now;
  return channel === 'sms' ? nextSmsSendInstant(start, zone, quiet) : start;
}

export type ContactMark = 'email-bounced' | 'sms-opted-out' | null;

export interface FallbackContact {
  readonly email: string | null;
  readonly phone: string | null;
  readonly smsOptedOut: boolean;
  readonly emailBounced: boolean;
}

export interface FallbackPlan {
  readonly key: string;
  readonly channel: Channel;
  readonly recipient: string;
  /** The same decision's message on the other channel: no fallback while it is live. */
  readonly siblingKey: string | null;
}

/**
 * One fallback per message: never for a fallback itself, and only to a contact not known to be
 * unreachable (including the mark this failure sets). Channel preferences are not consulted:
 * they choose the routine channel, and this message could not be delivered on it. The caller
 * also skips it when `siblingKey` names a message that is not failed.
 */
export function planFallback(
  dedupeKey: string,
  channel: Channel,
  contact: FallbackContact,
  mark: ContactMark,
): FallbackPlan | null {
  if (dedupeKey.endsWith(FALLBACK_SUFFIX)) return null;
  const other: Channel = channel === 'email' ? 'sms' : 'email';
  const recipient =
    other === 'email'
      ? contact.emailBounced || mark === 'email-bounced'
        ? null
        : contact.email
      : contact.smsOptedOut || mark === 'sms-opted-out'
        ? null
        : contact.phone;
  if (recipient === null) return null;
  const suffix = `-${channel}`;
  return {
    key: `${dedupeKey}${FALLBACK_SUFFIX}`,
    channel: other,
    recipient,
    siblingKey: dedupeKey.endsWith(suffix)
      ? `${dedupeKey.slice(0, -suffix.length)}-${other}`
      : null,
  };
}

/** A failure no retry can fix; `fallBack` false when the other channel cannot do better. */
export class PermanentFailure extends Error {
  constructor(
    readonly code: string,
    readonly reason: string,
    readonly mark: ContactMark = null,
    readonly fallBack = true,
  ) {
    super(reason);
  }
}

/**
 * A transient failure as the permanent one it becomes when the message has had its last attempt
 * (`attempt` of `attempts`) or is `ageMs` old, past NOTIFY_GIVE_UP_AFTER; null while it may retry.
 */
export function givenUp(
  failure: { readonly code: string; readonly reason: string },
  attempt: number,
  attempts: number,
  ageMs: number,
  giveUpAfterMs: number,
): PermanentFailure | null {
  if (attempt < attempts && ageMs < giveUpAfterMs) return null;
  const over = `${attempt} attempts over ${Math.round(ageMs / 60_000)} min`;
  return new PermanentFailure(failure.code, `gave up after ${over}: ${failure.reason}`);
}

/** Why a message cannot go to this contact on this channel, or null (no account: undefined). */
export function contactRefusal(
  channel: Channel,
  contact: { readonly smsOptedOut: boolean; readonly emailBounced: boolean } | undefined,
): PermanentFailure | null {
  if (contact === undefined) return new PermanentFailure('no-account', 'account not found');
  if (channel === 'sms' && contact.smsOptedOut) {
    return new PermanentFailure('opted-out', 'the number has opted out of SMS');
  }
  if (channel === 'email' && contact.emailBounced) {
    return new PermanentFailure('bounced', 'the address is marked bounced');
  }
  return null;
}

/** Renders a message; bad template params are a permanent failure with no fallback. */
export function renderOrFail(input: Parameters<typeof renderMessage>[0]): RenderedMessage {
  try {
    return renderMessage(input);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    throw new PermanentFailure('template', error.message, null, false);
  }
}
