import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config, TokenScope } from '../config';
import { metrics } from '../observability/metrics';

/**
 * Who may use the HTTP surface, and how they prove it.
 *
 * - The operator account (DASHBOARD_USER / DASHBOARD_PASSWORD, HTTP Basic): everything.
 * - The optional viewer account (DASHBOARD_VIEWER_USER / _PASSWORD, HTTP Basic): reads only.
 * - API tokens (API_TOKENS, `Authorization: Bearer <token>`), each with a scope: `ingest` (the
 *   /v1/ingest/* routes only: the billing system), `read` (GET routes and /metrics, like the
 *   viewer) or `operator` (everything; also the older `name=token` form). The token's name is
 *   recorded as the actor. A request outside the scope gets 403.
 * - Demo mode without dashboard credentials: everyone is the operator "demo" (src/config refuses
 *   this on a non-loopback HOST).
 *
 * Failed logins (a credential was given and matched nothing) are counted per client address:
 * beyond AUTH_FAILURE_LIMIT in a minute, that address gets 429 with Retry-After, credentials
 * unchecked, until its minute is over. The address is the socket's peer (no proxy headers are
 * trusted), so behind a reverse proxy every client shares the proxy's budget.
 *
 * Comparison is constant-time: both sides are hashed to fixed-length SHA-256 digests (so the
 * length of a secret does not leak either) and compared with crypto.timingSafeEqual, and every
 * configured credential is checked on every request (no early exit on the first match).
 */

/** operator: everything; viewer: reads only (the viewer account, `read` tokens); ingest: /v1/ingest/*. */
export type Role = 'operator' | 'viewer' | 'ingest';

const ROLE_OF_SCOPE: Readonly<Record<TokenScope, Role>> = {
  operator: 'operator',
  read: 'viewer',
  ingest: 'ingest',
};

export interface Principal {
  /** Name recorded in the event log and job origins. */
  readonly name: string;
  readonly role: Role;
  readonly via: 'basic' | 'bearer' | 'demo';
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on authenticated scopes. */
    principal?: Principal;
  }
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

interface BasicAccount {
  readonly user: Buffer;
  readonly password: Buffer;
  readonly name: string;
  readonly role: Role;
}

export interface Authenticator {
  /** False when no credential of any kind is configured (and not in open demo mode). */
  readonly configured: boolean;
  /** Demo mode without credentials: every request is the demo operator. */
  readonly open: boolean;
  /** Whether any Basic account exists (the dashboard needs one, or `open`). */
  readonly hasBasic: boolean;
  authenticate(header: string | undefined, allowBearer: boolean): Principal | null;
  /** Failed logins per client address. */
  readonly failures: FailureThrottle;
}

/** One minute, ms: the window of AUTH_FAILURE_LIMIT. */
const FAILURE_WINDOW_MS = 60_000;
/** Addresses tracked at most (memory bound under a spread-out attack). */
const FAILURE_TRACKED_MAX = 10_000;

/**
 * Failed logins per client address in fixed one-minute windows. `retryAfterMs` is how long an
 * address must wait (0: it may try). `now` is injectable for tests.
 */
export class FailureThrottle {
  private readonly windows = new Map<string, { startMs: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly now: () => number = Date.now,
  ) {}

  retryAfterMs(address: string): number {
    const w = this.windows.get(address);
    if (w === undefined) return 0;
    const left = w.startMs + FAILURE_WINDOW_MS - this.now();
    if (left <= 0) {
      this.windows.delete(address);
      return 0;
    }
    return w.count >= this.limit ? left : 0;
  }

  fail(address: string): void {
    const now = this.now();
    const w = this.windows.get(address);
    if (w !== undefined && now - w.startMs < FAILURE_WINDOW_MS) {
      w.count += 1;
      return;
    }
    this.windows.delete(address);
    if (this.windows.size >= FAILURE_TRACKED_MAX) {
      for (const [key, old] of this.windows) {
        if (now - old.startMs >= FAILURE_WINDOW_MS) this.windows.delete(key);
      }
      // Still full: forget the oldest window (Map iterates in insertion order).
      const oldest = this.windows.keys().next();
      if (this.windows.size >= FAILURE_TRACKED_MAX && oldest.done !== true) {
        this.windows.delete(oldest.value);
      }
    }
    this.windows.set(address, { startMs: now, count: 1 });
  }
}

export function createAuthenticator(config: Config): Authenticator {
  const basic: BasicAccount[] = [];
  if (config.dashboard) {
    basic.push({
      user: digest(config.dashboard.user),
      password: digest(config.dashboard.password),
      name: config.dashboard.user,
      role: 'operator',
    });
  }
  if (config.dashboardViewer) {
    basic.push({
      user: digest(config.dashboardViewer.user),
      password: digest(config.dashboardViewer.password),
      name: config.dashboardViewer.user,
      role: 'viewer',
    });
  }
  const tokens = config.apiTokens.map((t) => ({
    name: t.name,
    role: ROLE_OF_SCOPE[t.scope],
    token: digest(t.token),
  }));
  const open = config.demo && config.dashboard === null;

  return {
    configured: open || basic.length > 0 || tokens.length > 0,
    open,
    hasBasic: basic.length > 0,
    failures: new FailureThrottle(config.http.authFailureLimit),
    authenticate(header, allowBearer) {
      if (open) return { name: 'demo', role: 'operator', via: 'demo' };
      if (header === undefined) return null;
      const space = header.indexOf(' ');
      if (space <= 0) return null;
      const scheme = header.slice(0, space).toLowerCase();
      const value = header.slice(space + 1).trim();
      if (scheme === 'basic') {
        const decoded = Buffer.from(value, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon < 0) return null;
        const user = digest(decoded.slice(0, colon));
        const password = digest(decoded.slice(colon + 1));
        let found: BasicAccount | null = null;
        for (const account of basic) {
          // Both comparisons always run (bitwise &), so timing does not reveal which one failed.
          const match =
            Number(timingSafeEqual(user, account.user)) &
            Number(timingSafeEqual(password, account.password));
          if (match === 1 && found === null) found = account;
        }
        return found ? { name: found.name, role: found.role, via: 'basic' } : null;
      }
      if (scheme === 'bearer' && allowBearer) {
        const given = digest(value);
        let found: (typeof tokens)[number] | null = null;
        for (const t of tokens) {
          if (timingSafeEqual(given, t.token) && found === null) found = t;
        }
        return found !== null ? { name: found.name, role: found.role, via: 'bearer' } : null;
      }
      return null;
    },
  };
}

export const BASIC_CHALLENGE = 'Basic realm="overdue-worker", charset="UTF-8"';

/** Methods that change something (and so need the operator role and the same-origin check). */
export function isMutating(method: string): boolean {
  return !['GET', 'HEAD', 'OPTIONS'].includes(method.toUpperCase());
}

/**
 * Same-origin check for mutating requests, as defence in depth against cross-site request
 * forgery. Basic credentials are cached by the browser and attached automatically to every
 * request to this origin, including a form or fetch() started by another site; no cookies are
 * used, so there is no CSRF token to check, but browsers always send an `Origin` header (or at
 * least a `Referer`) on cross-site POST/PUT/PATCH/DELETE. So: when either header is present its
 * host must equal the `Host` header; a request with neither is a non-browser client (curl, the
 * billing system), which no other site can make a browser send. Bearer tokens are never attached
 * by a browser on its own, but the check costs them nothing and applies uniformly.
 */
export function sameOrigin(req: FastifyRequest): boolean {
  const host = req.headers.host;
  const origin = req.headers.origin;
  const referer = req.headers.referer;
  const source = origin ?? referer;
  if (source === undefined) return true;
  if (host === undefined || source === 'null') return false;
  try {
    return new URL(source).host.toLowerCase() === host.toLowerCase();
  } catch {
    return false;
  }
}

export interface GuardOptions {
  /** Accept `Authorization: Bearer` (the API) or only Basic (the dashboard, for browsers). */
  readonly allowBearer: boolean;
}

/** Routes an `ingest` token may call: the ingest API and the API's description. */
function ingestMayCall(req: FastifyRequest): boolean {
  const path = req.url.split('?')[0] ?? '';
  return path.startsWith('/v1/ingest/') || (req.method === 'GET' && path === '/v1/openapi.json');
}

/**
 * An onRequest hook: 429 for an address over its failed-login budget, 401 without a valid
 * credential, 403 outside the principal's scope (a viewer's or read token's mutating request, an
 * ingest token outside /v1/ingest/*) or for a cross-origin mutating request. Runs before the body
 * is parsed, so bad credentials are refused before any input is looked at.
 */
export function guard(auth: Authenticator, options: GuardOptions) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const header = req.headers.authorization;
    const waitMs = auth.open ? 0 : auth.failures.retryAfterMs(req.ip);
    if (waitMs > 0) {
      metrics.httpRefused('auth', 429);
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(waitMs / 1000)))
        .send({ error: 'too-many-requests', message: 'too many failed logins; retry later' });
    }
    const principal = auth.authenticate(header, options.allowBearer);
    if (principal === null) {
      // Only a credential that matched nothing counts: a browser's first request carries none.
      if (header !== undefined && header !== '') {
        auth.failures.fail(req.ip);
        metrics.httpRefused('auth', 401);
      }
      return reply
        .code(401)
        .header('www-authenticate', BASIC_CHALLENGE)
        .send({
          error: 'unauthorized',
          message: auth.configured
            ? 'valid credentials are required'
            : 'no credentials are configured: set DASHBOARD_USER/DASHBOARD_PASSWORD or API_TOKENS',
        });
    }
    if (principal.role === 'ingest' && !ingestMayCall(req)) {
      return reply
        .code(403)
        .send({ error: 'forbidden', message: 'this token may only call /v1/ingest/*' });
    }
    if (isMutating(req.method)) {
      if (principal.role === 'viewer') {
        return reply
          .code(403)
          .send({ error: 'forbidden', message: 'this account or token is read-only' });
      }
      if (!sameOrigin(req)) {
        return reply
          .code(403)
          .send({ error: 'forbidden', message: 'cross-origin request refused (Origin/Referer)' });
      }
    }
    req.principal = principal;
    return undefined;
  };
}

/**
 * Whether a Host header names this server: `allowed` null accepts any; otherwise the header's
 * `name:port` or its name alone must be listed (lower case). A missing header is refused.
 */
export function hostAllowed(host: string | undefined, allowed: readonly string[] | null): boolean {
  if (allowed === null) return true;
  if (host === undefined) return false;
  const full = host.trim().toLowerCase();
  const name = full.replace(/:\d+$/, '');
  return allowed.includes(full) || allowed.includes(name);
}

/** The job origin and event actor of a principal: `operator:<name>` (at most 80 characters). */
export function actorName(principal: Principal): string {
  return `operator:${principal.name}`.slice(0, 80);
}
