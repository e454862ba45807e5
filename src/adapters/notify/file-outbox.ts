import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Logger } from '../../logger';
import type { MailMessage, MailPort, SendOutcome, SmsLookup, SmsMessage, SmsPort } from './ports';

/**
 * The newcomer's adapters: with no SMTP or Twilio settings, each message is written once as a
 * file under `<dataDir>/outbox/{email,sms}/` (an .eml a mail client opens, a .json for SMS) and
 * logged without the recipient. The file name is the dedupe key, and files are created with
 * O_EXCL, so a retry finds the file and reports the same message instead of writing another.
 */

function isExists(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'EEXIST';
}

/**
 * Writes a message's file once: a file already there is the same message sent again (its key is
 * its name), kept as it is. Logs the write.
 */
async function writeOnce(file: string, content: string | Buffer, log: () => void): Promise<void> {
  try {
    await writeFile(file, content, { flag: 'wx' });
    log();
  } catch (error) {
    if (!isExists(error)) throw error;
  }
}

export function fileMailPort(dataDir: string, from: string, logger: Logger): MailPort {
  const dir = path.join(dataDir, 'outbox', 'email');
  // Builds the real RFC 5322 message (headers, text and HTML parts) without sending it.
  const builder = nodemailer.createTransport({
    streamTransport: true,
    buffer: true,
    newline: 'unix',
  });
  return {
    provider: 'file',
    async send(message: MailMessage): Promise<SendOutcome> {
      const info = await builder.sendMail({
        from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        messageId: message.messageId,
        headers: { 'X-Notification-Key': message.key, 'Content-Language': message.language },
      });
      const file = path.join(dir, `${message.key}.eml`);
      await mkdir(dir, { recursive: true });
      await writeOnce(file, info.message as Buffer, () =>
        logger.info(
          { key: message.key, file, subject: message.subject },
          'email written to the outbox folder',
        ),
      );
      return { ok: true, provider: 'file', messageId: message.messageId };
    },
    close: () => Promise.resolve(),
  };
}

export function fileSmsPort(dataDir: string, logger: Logger): SmsPort {
  const dir = path.join(dataDir, 'outbox', 'sms');
  const fileOf = (key: string) => path.join(dir, `${key}.json`);
  return {
    provider: 'file',
    async send(message: SmsMessage): Promise<SendOutcome> {
      await mkdir(dir, { recursive: true });
      const file = fileOf(message.key);
      const content = `${JSON.stringify({ to: message.to, body: message.body }, null, 2)}\n`;
      await writeOnce(file, content, () =>
        logger.info(
          { key: message.key, file, body: message.body },
          'SMS written to the outbox folder',
        ),
      );
      return { ok: true, provider: 'file', messageId: message.key };
    },
    async find(lookup: SmsLookup): Promise<string | null> {
      // Keys are not part of the lookup; the send above is already idempotent per key.
      void lookup;
      return Promise.resolve(null);
    },
    close: () => Promise.resolve(),
  };
}

/** Reads a message the file adapter wrote (for tests and the curious). */
export function readOutboxFile(
  dataDir: string,
  channel: 'email' | 'sms',
  key: string,
): Promise<string> {
  return readFile(
    path.join(dataDir, 'outbox', channel, `${key}.${channel === 'email' ? 'eml' : 'json'}`),
    'utf8',
  );
}
