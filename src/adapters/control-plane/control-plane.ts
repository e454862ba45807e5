import { createHmac } from 'node:crypto';
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
  /** Injected for tests that pin time; defaults to the system clock. */
  readonly nowMs?: () => number;
}

export function httpControlPlane(options: HttpControlPlaneOptions): ControlPlane {
  const nowMs = options.nowMs ?? Date.now;
  return {
    mode: 'http',
    async apply(command) {
      const body = JSON.stringify(command);
      const timestamp = String(Math.floor(nowMs() / 1000));
      let response: Response;
      try {
        response = await fetch(options.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'idempotency-key': command.idempotencyKey,
            [TIMESTAMP_HEADER]: timestamp,
            [SIGNATURE_HEADER]: signBody(options.secret, timestamp, body),
          },
          body,
          signal: AbortSignal.timeout(options.timeoutMs),
          // A 307/308 would re-send the signed body to wherever the answer points.
          redirect: 'error',
        });
      } catch (error) {
        const cause = (error as { cause?: { message?: unknown } }).cause?.message;
        if (typeof cause === 'string' && /redirect/i.test(cause)) {
          return {
            ok: false,
            permanent: false,
            error:
              'control plane answered a redirect, which is not followed (set CONTROL_PLANE_URL to the final address)',
          };
        }
        // Connection refused, reset or timed out: the call may or may not have landed; the
        // idempotency key makes the retry safe.
        return { ok: false, permanent: false, error: describeError(error) };
      }
      const text = await response.text().catch(() => '');
      if (response.ok) return { ok: true, status: response.status };
      const permanent =
        response.status >= 400 &&
        response.status < 500 &&
        response.status !== 408 &&
        response.status !== 409 &&
        response.status !== 429;
      return {
        ok: false,
        permanent,
        status: response.status,
        error: `control plane answered ${response.status}${text ? `: ${scrubPersonalData(text).slice(0, 200)}` : ''}`,
      };
    },
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
