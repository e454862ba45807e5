import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  signBody,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
} from '../../src/adapters/control-plane/control-plane';

/** A control-plane webhook on loopback that checks signatures and records what it was asked. */

export interface ControlCall {
  readonly op: string;
  readonly accountId: string;
  readonly serviceId: string;
  readonly instanceId?: string;
  readonly idempotencyKey: string;
  readonly headerKey: string;
  readonly at: number;
}

export interface FakeControlPlane {
  url: string;
  readonly secret: string;
  /** Accepted calls, one per idempotency key (repeats of a key are counted in `repeats`). */
  readonly calls: ControlCall[];
  /** Every request received, accepted or not. */
  readonly requests: ControlCall[];
  repeats: number;
  badSignatures: number;
  /** Status codes to answer next, in order (then 200). A number < 0 means: hang up (no answer). */
  script: number[];
  /** Awaited before an accepted call is answered (to look at the caller's state meanwhile). */
  onCall: ((call: ControlCall) => Promise<void>) | null;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `port`: listen on this port (to bring a closed control plane back at the same URL). */
export async function startFakeControlPlane(
  secret = 'test-secret-0123456789abcdef0123456789',
  port = 0,
): Promise<FakeControlPlane> {
  const seen = new Set<string>();
  const state: FakeControlPlane = {
    url: '',
    secret,
    calls: [],
    requests: [],
    repeats: 0,
    badSignatures: 0,
    script: [],
    onCall: null,
    close: () => Promise.resolve(),
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const text = await body(req);
      const timestamp = String(req.headers[TIMESTAMP_HEADER] ?? '');
      const signature = String(req.headers[SIGNATURE_HEADER] ?? '');
      if (signature !== signBody(secret, timestamp, text)) {
        state.badSignatures += 1;
        res.writeHead(401).end('bad signature');
        return;
      }
      const parsed = JSON.parse(text) as Omit<ControlCall, 'headerKey' | 'at'>;
      const call: ControlCall = {
        ...parsed,
        headerKey: String(req.headers['idempotency-key'] ?? ''),
        at: Date.now(),
      };
      state.requests.push(call);
      const next = state.script.shift();
      if (next !== undefined && next < 0) {
        req.socket.destroy();
        return;
      }
      if (next !== undefined && next !== 200) {
        res.writeHead(next).end(`scripted ${next}`);
        return;
      }
      if (state.onCall !== null) await state.onCall(call);
      if (seen.has(call.idempotencyKey)) state.repeats += 1;
      else {
        seen.add(call.idempotencyKey);
        state.calls.push(call);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    })();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${bound}/control`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
