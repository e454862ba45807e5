import { createHmac } from 'node:crypto';
import { Agent, request } from 'undici';
import { describeError, scrubPersonalData } from '../../describe-error';

/**
 * The control-plane port: how suspensions, resumptions and studio releases reach the cloud.
 * Two adapters: an HMAC-signed HTTP webhook, and a database-only mode in which the `services`
 * and `studio_instances` rows written by the evaluation are the effect and nothing is called.
 */

export type ControlOp = 'suspend' | 'resume' | 'release';

export interface ControlCommand {
  readonly op: ControlOp;
  readonly accountId: string;
  /** Service to suspend or resume; for a release, the studio service of the instance. */
  readonly serviceId: string;
  /** Studio instance, for a release. */
  readonly instanceId?: string;
  /** Deterministic key of the effect; the control plane must treat repeats as one call. */
  readonly idempotencyKey: string;
  /** Why, for the control plane's audit log: e.g. "overdue", "overdue-resolved". */
  readonly reason: string;
}

export type ControlResult =
  | { readonly ok: true; readonly status: number }
  /** `permanent`: retrying cannot help (4xx other than 408/429). */
  | {
      readonly ok: false;
      readonly permanent: boolean;
      readonly status?: number;
      readonly error: string;
    };

export interface ControlPlane {
  readonly mode: 'http' | 'database';
  apply(command: ControlCommand): Promise<ControlResult>;
  /** Closes kept-alive connections (after the workers have stopped). */
  close?(): Promise<void>;
}

export const SIGNATURE_HEADER = 'x-overdue-signature';
export const TIMESTAMP_HEADER = 'x-overdue-timestamp';

/** `sha256=<hex>` of HMAC-SHA256(secret, `${timestamp}.${body}`): the receiver recomputes it. */
export function signBody(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export interface HttpControlPlaneOptions {
  readonly url: string;
  readonly secret: string;
  /** Per-request deadline, ms. */
  readonly timeoutMs: number;
  /**
   * Most connections kept open to the control plane (keep-alive, one request at a time each):
   * the effects concurrency, so every running effect has one and none is opened per call.
   * Default 16.
   */
  readonly connections?: number;
  /** Injected for tests that pin time; defaults to the system clock. */
  readonly nowMs?: () => number;
}

/** Redirect statuses, which are not followed (fetch's redirect: 'error' set). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** How long an idle kept-alive connection stays open, ms (the server may close it sooner). */
const KEEP_ALIVE_MS = 30_000;

/**
 * POSTs each command, signed, with undici's request on a keep-alive Agent of its own (Node's
 * fetch is undici too, but its WHATWG layer costs CPU per call and its shared pool has no cap).
 * Redirects are never followed: a 307/308 would re-send the signed body to wherever the answer
 * points.
 */
export function httpControlPlane(options: HttpControlPlaneOptions): ControlPlane {
  const nowMs = options.nowMs ?? Date.now;
  const agent = new Agent({
    connections: options.connections ?? 16,
    pipelining: 1,
    keepAliveTimeout: KEEP_ALIVE_MS,
    keepAliveMaxTimeout: KEEP_ALIVE_MS,
    connectTimeout: options.timeoutMs,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  return {
    mode: 'http',
    async apply(command) {
      const body = JSON.stringify(command);
      const timestamp = String(Math.floor(nowMs() / 1000));
      let status: number;
      let text: string;
      try {
        const response = await request(options.url, {
          method: 'POST',
          dispatcher: agent,
          headers: {
            'content-type': 'application/json',
            'idempotency-key': command.idempotencyKey,
            [TIMESTAMP_HEADER]: timestamp,
            [SIGNATURE_HEADER]: signBody(options.secret, timestamp, body),
          },
          body,
          signal: AbortSignal.timeout(options.timeoutMs),
        });
        status = response.statusCode;
        text = await response.body.text().catch(() => '');
      } catch (error) {
        // Connection refused, reset or timed out: the call may or may not have landed; the
        // idempotency key makes the retry safe.
        return { ok: false, permanent: false, error: describeError(error) };
      }
      if (REDIRECTS.has(status)) {
        return {
          ok: false,
          permanent: false,
          status,
          error:
            'control plane answered a redirect, which is not followed (set CONTROL_PLANE_URL to the final address)',
        };
      }
      if (status >= 200 && status < 300) return { ok: true, status };
      const permanent =
        status >= 400 && status < 500 && status !== 408 && status !== 409 && status !== 429;
      return {
        ok: false,
        permanent,
        status,
        error: `control plane answered ${status}${text ? `: ${scrubPersonalData(text).slice(0, 200)}` : ''}`,
      };
    },
    close: () => agent.close(),
  };
}

/** The rows are the effect: nothing to call. */
export function databaseControlPlane(): ControlPlane {
  return {
    mode: 'database',
    apply() {
      return Promise.resolve({ ok: true, status: 204 });
    },
  };
}
