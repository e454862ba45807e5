/**
 * The two notification ports. Narrow on purpose (one vendor per adapter file): the send job owns
 * "once and only once", the adapters only translate a message into one provider call and the
 * provider's answer into a `SendOutcome` that says whether a retry can help.
 */

export interface MailMessage {
  /** Recipient address. Personal data: adapters never log it. */
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  /** RFC 5322 Message-ID with angle brackets, derived from the dedupe key: stable across retries. */
  readonly messageId: string;
  /** The notification's dedupe key (sent as the X-Notification-Key header). */
  readonly key: string;
  /** BCP 47 tag, sent as Content-Language. */
  readonly language: string;
}

export interface SmsMessage {
  /** E.164 number. Personal data: adapters never log it. */
  readonly to: string;
  readonly body: string;
  /** The notification's dedupe key. */
  readonly key: string;
}

/** Where a permanent failure says the contact cannot be used any more. */
export type ContactMark = 'email-bounced' | 'sms-opted-out';

export type SendOutcome =
  | {
      readonly ok: true;
      /** Adapter name stored as `notifications.provider_id` ("smtp", "twilio", "file"). */
      readonly provider: string;
      /** The provider's id for this message (SMTP Message-ID, Twilio SID, file name). */
      readonly messageId: string;
    }
  | {
      readonly ok: false;
      /** True: retrying cannot help (invalid number, unsubscribed, SMTP 5xx). */
      readonly permanent: boolean;
      /**
       * True when the provider may have accepted the message although we saw an error (a
       * timeout or a connection lost after the request was written): the next attempt must look
       * the message up before sending again.
       */
      readonly ambiguous: boolean;
      /** Provider code, e.g. "smtp-550", "twilio-21610", "timeout". */
      readonly code: string;
      /** Human-readable reason without personal data, stored as `last_error`. */
      readonly reason: string;
      readonly mark?: ContactMark;
    };

export interface MailPort {
  readonly provider: string;
  send(message: MailMessage): Promise<SendOutcome>;
  close(): Promise<void>;
}

export interface SmsLookup {
  readonly to: string;
  readonly body: string;
  /** The first attempt's start: only messages created since (minus clock skew) can match. */
  readonly since: Date;
}

export interface SmsPort {
  readonly provider: string;
  send(message: SmsMessage, statusCallbackUrl: string | null): Promise<SendOutcome>;
  /**
   * Finds a message an earlier, interrupted attempt may have handed to the provider. Returns its
   * provider id, or null when the provider has none (then sending again is safe). Throws when the
   * provider cannot be asked (the caller retries later rather than risk a duplicate).
   */
  find(lookup: SmsLookup): Promise<string | null>;
  close(): Promise<void>;
}

export interface NotifyPorts {
  readonly mail: MailPort;
  readonly sms: SmsPort;
  close(): Promise<void>;
}

/** Message-ID for a notification: `<dedupeKey@domain>`; the key only has [A-Za-z0-9_.-]. */
export function messageIdFor(dedupeKey: string, fromAddress: string): string {
  const domain = /@([^@\s>]+)>?\s*$/.exec(fromAddress)?.[1] ?? 'overdue-worker.invalid';
  return `<${dedupeKey}@${domain}>`;
}
