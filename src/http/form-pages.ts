import type { FastifyInstance } from 'fastify';
import { guard, type Authenticator } from './auth';

/**
 * What the server-rendered pages (the console, the safety valves) share: their Fastify scope is
 * behind the dashboard's guard (Basic auth, the viewer refused on posts, Origin checked) and
 * reads HTML form bodies.
 */

/** Form bodies: fields as strings, a repeated field (checkboxes) as an array. */
export function parseForm(body: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(body)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/** Guards `scope` and lets it read urlencoded form bodies of up to `bodyLimit` bytes. */
export function formScope(scope: FastifyInstance, auth: Authenticator, bodyLimit: number): void {
  scope.addHook('onRequest', guard(auth, { allowBearer: false }));
  scope.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit },
    (_req, body, done) => done(null, parseForm(String(body))),
  );
}
