import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerDataStream } from 'smtp-server';

/**
 * A real SMTP server on loopback (smtp-server) that keeps what it accepts, parsed with
 * mailparser, and can be scripted to answer RCPT TO or DATA with an error a given number of
 * times (421 "try later", 550 "no such user", ...).
 */

export interface SinkFailure {
  readonly stage: 'rcpt' | 'data';
  readonly code: number;
  readonly message: string;
}

export interface SmtpSink {
  readonly url: string;
  /** Parsed messages in arrival order (empty when `parse` is false). */
  readonly messages: ParsedMail[];
  /** Message-ID → times accepted. */
  readonly byMessageId: Map<string, number>;
  /** Messages accepted. */
  accepted(): number;
  /** Message-IDs accepted more than once. */
  duplicates(): number;
  /** The next `times` transactions fail at `stage` with `code`. */
  failNext(failure: SinkFailure, times?: number): void;
  /** Resolves when at least `n` messages were accepted. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function createSmtpSink(
  options: {
    parse?: boolean;
    /** Listen on this port (a restarted sink); default: a free one. */ port?: number;
  } = {},
): Promise<SmtpSink> {
  const parse = options.parse ?? true;
  const messages: ParsedMail[] = [];
  const byMessageId = new Map<string, number>();
  const failures: SinkFailure[] = [];
  let count = 0;
  const waiters: { n: number; resolve: () => void }[] = [];

  const take = (stage: SinkFailure['stage']): SinkFailure | undefined => {
    if (failures[0]?.stage !== stage) return undefined;
    return failures.shift();
  };
  const smtpError = (f: SinkFailure): Error =>
    Object.assign(new Error(f.message), { responseCode: f.code });

  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    // Pooled clients keep connections open; do not hold tests up on close.
    closeTimeout: 100,
    onRcptTo(_address, _session, callback) {
      const f = take('rcpt');
      callback(f === undefined ? undefined : smtpError(f));
    },
    onData(stream: SMTPServerDataStream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const f = take('data');
        if (f !== undefined) {
          callback(smtpError(f));
          return;
        }
        const raw = Buffer.concat(chunks);
        const id = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(raw.toString('latin1'))?.[1] ?? '(none)';
        byMessageId.set(id, (byMessageId.get(id) ?? 0) + 1);
        count += 1;
        const done = (): void => {
          for (const w of waiters.filter((x) => count >= x.n)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve();
          }
          callback();
        };
        if (!parse) {
          done();
          return;
        }
        simpleParser(raw)
          .then((mail) => {
            messages.push(mail);
            done();
          })
          .catch((error: unknown) => callback(error as Error));
      });
    },
  });
  // A client that dies mid-session (a killed daemon) resets its connection; smtp-server reports
  // that as an 'error' event, which must not become an uncaught exception in the test process.
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    byMessageId,
    accepted: () => count,
    duplicates: () => [...byMessageId.values()].filter((n) => n > 1).length,
    failNext(failure, times = 1) {
      for (let i = 0; i < times; i += 1) failures.push(failure);
    },
    waitFor(n, timeoutMs = 10_000) {
      if (count >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`smtp sink: ${count} of ${n} messages`)),
          timeoutMs,
        );
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
