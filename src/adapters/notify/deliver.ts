import type { Logger } from '../../logger';
import type { RenderedMessage } from '../../notify/templates';
import { messageIdFor, type NotifyPorts, type SendOutcome } from './index';

export interface Delivery {
  readonly channel: 'email' | 'sms';
  readonly recipient: string;
  readonly dedupeKey: string;
  readonly locale: string;
  readonly message: RenderedMessage;
  /** An earlier attempt may have handed the message over already. */
  readonly interrupted: boolean;
  readonly firstAttemptAt: Date;
}

/**
 * Hands one message to its provider. An email is re-sent with the same Message-ID (derived from
 * the dedupe key), which receiving systems use to drop a duplicate; an interrupted SMS is first
 * looked up at the provider (recipient + exact body, created since the first attempt).
 */
export async function deliver(
  ports: NotifyPorts,
  d: Delivery,
  opts: { readonly mailFrom: string; readonly smsStatusCallbackUrl: string | null },
  logger: Logger,
  ctx: Record<string, unknown>,
): Promise<SendOutcome> {
  if (d.channel === 'email') {
    return ports.mail.send({
      to: d.recipient,
      subject: d.message.subject,
      text: d.message.text,
      html: d.message.html,
      messageId: messageIdFor(d.dedupeKey, opts.mailFrom),
      key: d.dedupeKey,
      language: d.locale,
    });
  }
  if (d.interrupted) {
    // Throws (→ retry later) when the provider cannot be asked: never guess "not sent".
    const found = await ports.sms.find({
      to: d.recipient,
      body: d.message.sms,
      since: d.firstAttemptAt,
    });
    if (found !== null) {
      logger.info({ ...ctx, messageId: found }, 'reconciled: the provider already had this SMS');
      return { ok: true, provider: ports.sms.provider, messageId: found };
    }
  }
  return ports.sms.send(
    { to: d.recipient, body: d.message.sms, key: d.dedupeKey },
    opts.smsStatusCallbackUrl,
  );
}
