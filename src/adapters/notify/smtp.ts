import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';
import { scrubPersonalData } from '../../describe-error';
import type { Logger } from '../../logger';
import type { MailMessage, MailPort, SendOutcome } from './ports';

/**
 * Email over SMTP through nodemailer's pooled transport: long-lived connections, many messages
 * each. Replies map to outcomes by the SMTP rules: 4xx transient, 5xx permanent; a 5xx on
 * RCPT TO (or an enhanced status 5.1.x) means the address is bad and is marked bounced.
 *
 * The message is built in memory first (the same MIME nodemailer would stream) and handed over
 * as one buffer: streamed, every header line and encoded body line became a socket write of its
 * own, which cost more CPU than building the message.
 */

export interface SmtpOptions {
  readonly url: string;
  readonly from: string;
  /** Socket, greeting and connection deadline, ms. */
  readonly timeoutMs: number;
  /** Pooled connections. */
  readonly maxConnections?: number;
  readonly dkim?: {
    readonly domain: string;
    readonly selector: string;
    readonly privateKeyFile: string;
  } | null;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  command?: string;
  response?: string;
}

export function smtpMailPort(options: SmtpOptions, logger: Logger): MailPort {
  const dkim =
    options.dkim == null
      ? undefined
      : {
          domainName: options.dkim.domain,
          keySelector: options.dkim.selector,
          privateKey: readFileSync(options.dkim.privateKeyFile, 'utf8'),
        };
  const transport = nodemailer.createTransport({
    url: options.url,
    pool: true,
    maxConnections: options.maxConnections ?? 8,
    // Reconnect now and then so one bad connection does not live forever.
    maxMessages: 1_000,
    // No silent re-sends inside the pool: every retry goes through the job (counted, backed off,
    // and after a reconciliation).
    maxRequeues: 0,
    connectionTimeout: options.timeoutMs,
    greetingTimeout: options.timeoutMs,
    socketTimeout: options.timeoutMs,
    ...(dkim === undefined ? {} : { dkim }),
  });
  transport.on('error', (err: Error) => {
    logger.warn({ err: describe(err) }, 'smtp pool error');
  });

  return {
    provider: 'smtp',
    async send(message: MailMessage): Promise<SendOutcome> {
      try {
        const envelope = { from: options.from, to: message.to, messageId: message.messageId };
        const raw = await new MailComposer({
          ...envelope,
          subject: message.subject,
          text: message.text,
          html: message.html,
          headers: {
            'X-Notification-Key': message.key,
            'Content-Language': message.language,
            // Transactional notices: ask auto-responders to stay quiet.
            'Auto-Submitted': 'auto-generated',
          },
        })
          .compile()
          .build();
        // from / to / messageId beside `raw` give the SMTP envelope and the returned id.
        const info = await transport.sendMail({ ...envelope, raw });
        return { ok: true, provider: 'smtp', messageId: info.messageId || message.messageId };
      } catch (error) {
        return classifySmtpError(error as SmtpError);
      }
    },
    close: () => {
      transport.close();
      return Promise.resolve();
    },
  };
}

function describe(err: SmtpError): string {
  return scrubPersonalData(
    [err.code, err.command, err.responseCode, err.message].filter((x) => x).join(' '),
  );
}

export function classifySmtpError(err: SmtpError): SendOutcome {
  const code = err.responseCode;
  // A rejection often quotes the recipient ("550 <a@b>: unknown user"): masked, since the
  // reason is stored as last_error and becomes the job's failedReason.
  const reason = scrubPersonalData(
    `${err.command ?? 'SMTP'}: ${err.response ?? err.message}`,
  ).slice(0, 500);
  if (typeof code === 'number' && code >= 500) {
    const badAddress = err.command === 'RCPT TO' || /\b5\.1\.\d+\b/.test(err.response ?? '');
    return {
      ok: false,
      permanent: true,
      ambiguous: false,
      code: `smtp-${code}`,
      reason,
      ...(badAddress ? { mark: 'email-bounced' as const } : {}),
    };
  }
  if (typeof code === 'number' && code >= 400) {
    return { ok: false, permanent: false, ambiguous: false, code: `smtp-${code}`, reason };
  }
  // No reply code: connection refused, reset or timed out. If it happened after the message
  // was written the server may have it; the retry reuses the same Message-ID.
  const refused = /ECONNREFUSED/.test(err.message);
  return {
    ok: false,
    permanent: false,
    ambiguous: !refused,
    code: err.code === 'ETIMEDOUT' ? 'timeout' : (err.code ?? 'smtp-error').toLowerCase(),
    reason,
  };
}
