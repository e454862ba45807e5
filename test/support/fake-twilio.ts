import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fake of the Twilio Messages API on loopback, enough for the real twilio library: create
 * (POST .../Messages.json, form-encoded, Basic auth), list (GET .../Messages.json with To/From)
 * and fetch one. Create can be scripted to answer with Twilio error bodies (20429, 21610, ...) or
 * to accept the message and then answer too late (the client times out after the provider
 * accepted: the case reconciliation exists for).
 */

export interface FakeMessage {
  readonly sid: string;
  readonly to: string;
  readonly from: string | null;
  readonly messagingServiceSid: string | null;
  readonly body: string;
  readonly statusCallback: string | null;
  readonly dateCreated: Date;
}

export type CreateScript =
  | {
      readonly kind: 'error';
      readonly status: number;
      readonly code: number;
      readonly message: string;
    }
  /** Store the message, then answer only after `delayMs` (past the client's timeout). */
  | { readonly kind: 'accept-then-hang'; readonly delayMs: number }
  /** Store the message and never answer; `onAccepted` runs when it is stored. */
  | { readonly kind: 'accept-then-call'; readonly onAccepted: () => void }
  /** Store the message, answer when `until` settles. */
  | { readonly kind: 'accept-then-hold'; readonly until: Promise<void> };

export interface FakeTwilio {
  readonly url: string;
  readonly accountSid: string;
  readonly authToken: string;
  readonly messages: FakeMessage[];
  /** Create requests received (including refused ones). */
  createRequests(): number;
  listRequests(): number;
  /** Messages with the same (to, body) stored more than once. */
  duplicates(): number;
  script(step: CreateScript, times?: number): void;
  /** Drops scripted steps not used yet; returns how many there were. */
  clearScript(): number;
  close(): Promise<void>;
}

const ERROR_TEXT: Readonly<Record<number, string>> = {
  20429: 'Too Many Requests',
  21211: "The 'To' number is not a valid phone number.",
  21610: 'Attempt to send to unsubscribed recipient',
};

export function twilioError(code: number): CreateScript {
  const status = code === 20429 ? 429 : code >= 30000 ? 500 : 400;
  return { kind: 'error', status, code, message: ERROR_TEXT[code] ?? `error ${code}` };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export async function createFakeTwilio(): Promise<FakeTwilio> {
  const accountSid = `AC${randomBytes(16).toString('hex')}`;
  const authToken = randomBytes(16).toString('hex');
  const messages: FakeMessage[] = [];
  const bySid = new Map<string, FakeMessage>();
  const scripts: CreateScript[] = [];
  const hanging = new Set<ServerResponse>();
  let creates = 0;
  let lists = 0;
  const expectedAuth = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;

  const resource = (m: FakeMessage) => ({
    sid: m.sid,
    account_sid: accountSid,
    to: m.to,
    from: m.from,
    messaging_service_sid: m.messagingServiceSid,
    body: m.body,
    status: 'queued',
    num_segments: '1',
    direction: 'outbound-api',
    api_version: '2010-04-01',
    date_created: m.dateCreated.toUTCString(),
    date_updated: m.dateCreated.toUTCString(),
    date_sent: null,
    error_code: null,
    error_message: null,
    price: null,
    price_unit: 'USD',
    uri: `/2010-04-01/Accounts/${accountSid}/Messages/${m.sid}.json`,
    subresource_uris: {},
  });

  const base = `/2010-04-01/Accounts/${accountSid}/Messages`;
  const server = createServer((req, res) => {
    void (async () => {
      if (req.headers.authorization !== expectedAuth) {
        json(res, 401, { code: 20003, message: 'Authenticate', status: 401 });
        return;
      }
      const url = new URL(req.url ?? '/', 'http://fake');
      if (req.method === 'POST' && url.pathname === `${base}.json`) {
        creates += 1;
        const form = new URLSearchParams(await readBody(req));
        const step = scripts.shift();
        if (step?.kind === 'error') {
          json(res, step.status, {
            code: step.code,
            message: step.message,
            more_info: '',
            status: step.status,
          });
          return;
        }
        const message: FakeMessage = {
          sid: `SM${randomBytes(16).toString('hex')}`,
          to: form.get('To') ?? '',
          from: form.get('From'),
          messagingServiceSid: form.get('MessagingServiceSid'),
          body: form.get('Body') ?? '',
          statusCallback: form.get('StatusCallback'),
          dateCreated: new Date(Math.floor(Date.now() / 1000) * 1000),
        };
        messages.push(message);
        bySid.set(message.sid, message);
        if (step?.kind === 'accept-then-hold') {
          hanging.add(res);
          void step.until.finally(() => {
            hanging.delete(res);
            if (!res.destroyed) json(res, 201, resource(message));
          });
          return;
        }
        if (step?.kind === 'accept-then-hang') {
          hanging.add(res);
          setTimeout(() => {
            hanging.delete(res);
            if (!res.destroyed) json(res, 201, resource(message));
          }, step.delayMs).unref();
          return;
        }
        if (step?.kind === 'accept-then-call') {
          hanging.add(res);
          step.onAccepted();
          return;
        }
        json(res, 201, resource(message));
        return;
      }
      if (req.method === 'GET' && url.pathname === `${base}.json`) {
        lists += 1;
        const to = url.searchParams.get('To');
        const from = url.searchParams.get('From');
        const pageSize = Number(url.searchParams.get('PageSize') ?? '50');
        const found = messages
          .filter((m) => (to === null || m.to === to) && (from === null || m.from === from))
          .reverse()
          .slice(0, pageSize);
        json(res, 200, {
          messages: found.map(resource),
          first_page_uri: `${base}.json?PageSize=${pageSize}&Page=0`,
          next_page_uri: null,
          previous_page_uri: null,
          page: 0,
          page_size: pageSize,
          start: 0,
          end: Math.max(0, found.length - 1),
          uri: `${base}.json?PageSize=${pageSize}&Page=0`,
        });
        return;
      }
      const one = new RegExp(`^${base}/(SM[0-9a-f]{32})\\.json$`).exec(url.pathname);
      if (req.method === 'GET' && one?.[1] !== undefined) {
        const m = bySid.get(one[1]);
        if (m === undefined) json(res, 404, { code: 20404, message: 'Not found', status: 404 });
        else json(res, 200, resource(m));
        return;
      }
      json(res, 404, { code: 20404, message: 'Not found', status: 404 });
    })().catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { code: 20500, message: String(error), status: 500 });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    accountSid,
    authToken,
    messages,
    createRequests: () => creates,
    listRequests: () => lists,
    duplicates: () => {
      const seen = new Map<string, number>();
      for (const m of messages)
        seen.set(`${m.to}\n${m.body}`, (seen.get(`${m.to}\n${m.body}`) ?? 0) + 1);
      return [...seen.values()].filter((n) => n > 1).length;
    },
    script(step, times = 1) {
      for (let i = 0; i < times; i += 1) scripts.push(step);
    },
    clearScript() {
      const unused = scripts.length;
      scripts.length = 0;
      return unused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
