import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config';

/**
 * Who may use the HTTP surface, and how they prove it.
 *
 * - The operator account (DASHBOARD_USER / DASHBOARD_PASSWORD, HTTP Basic): everything.
 * - The optional viewer account (DASHBOARD_VIEWER_USER / _PASSWORD, HTTP Basic): reads only.
 * - API tokens (API_TOKENS, `Authorization: Bearer <token>`): everything the API offers, for
 *   the billing system and scripts; the token's name is recorded as the actor.
 * - Demo mode without dashboard credentials: everyone is the operator "demo" (config.ts refuses
 *   this on a non-loopback HOST).
 *
 * Comparison is constant-time: both sides are hashed to fixed-length SHA-256 digests (so the
 * length of a secret does not leak either) and compared with crypto.timingSafeEqual, and every
 * configured credential is checked on every request (no early exit on the first match).
 */

export type Role = 'operator' | 'viewer';

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
  const tokens = config.apiTokens.map((t) => ({ name: t.name, token: digest(t.token) }));
  const open = config.demo && config.dashboard === null;

  return {
    configured: open || basic.length > 0 || tokens.length > 0,
    open,
    hasBasic: basic.length > 0,
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
        let found: string | null = null;
        for (const t of tokens) {
          if (timingSafeEqual(given, t.token) && found === null) found = t.name;
        }
        return found !== null ? { name: found, role: 'operator', via: 'bearer' } : null;
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

/**
 * An onRequest hook: 401 without a valid credential, 403 for a viewer's mutating request or a
 * cross-origin mutating request. Runs before the body is parsed, so bad credentials are refused
 * before any input is looked at.
 */
export function guard(auth: Authenticator, options: GuardOptions) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const principal = auth.authenticate(req.headers.authorization, options.allowBearer);
    if (principal === null) {
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
    if (isMutating(req.method)) {
      if (principal.role !== 'operator') {
        return reply
          .code(403)
          .send({ error: 'forbidden', message: 'the viewer account is read-only' });
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

/** The job origin and event actor of a principal: `operator:<name>` (at most 80 characters). */
export function actorName(principal: Principal): string {
  return `operator:${principal.name}`.slice(0, 80);
}
