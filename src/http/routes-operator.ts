import { z } from 'zod';
import { JOB_NAMES } from '../adapters/queue/catalog';
import type { Daemon } from '../daemon';
import { accountParams, idSchema, noteSchema, type Api } from './api';
import { actorName } from './auth';
import { releaseStudioNow, retryFailed, setOperatorHold } from './operator-actions';
import { manualSchema, runTrigger } from './triggers';

/**
 * Operator actions: evaluate now, manual job triggers, operator holds, release a studio now.
 * Destructive ones (hold, release) take the account id typed again in `confirmAccountId`.
 */

const confirmBody = z
  .object({
    confirmAccountId: idSchema.describe('The account id of the target, typed again'),
    reason: noteSchema.optional().describe('Why, for the event log'),
  })
  .strict();

const idParams = z.object({ id: idSchema }).strict();

/** An outbox key (an effect's idempotency key, a message's dedupe key): 1–255, no ':'. */
const keyParams = z
  .object({
    key: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[^:]+$/, "must not contain ':'"),
  })
  .strict();

export function registerOperatorRoutes(api: Api, daemon: Daemon): void {
  api.route({
    method: 'POST',
    url: '/v1/accounts/:id/evaluate',
    tag: 'operator',
    summary: 'Evaluate one account now',
    description:
      'Enqueues an evaluation (deduplicated per account, the same path as payment events). The evaluation is attributed to the operator in the event log.',
    params: accountParams,
    body: z.object({}).strict(),
    status: 202,
    responses: { 202: 'Evaluation enqueued', 404: 'No such account' },
    handler: async ({ params, principal }) =>
      runTrigger(daemon, 'evaluate-account', { accountId: params.id }, principal),
  });

  for (const name of JOB_NAMES) {
    api.route({
      method: 'POST',
      url: `/v1/jobs/${name}`,
      tag: 'jobs',
      summary: `Trigger a ${name} job by hand`,
      description:
        'The body is the job payload, validated by the job catalog; `origin` is set to operator:<you>. control-plane needs `confirmAccountId`.',
      body: manualSchema(name),
      status: 202,
      responses: {
        202: 'Job enqueued',
        404: 'Unknown account, effect or notification',
        409: 'Notification already final',
      },
      handler: async ({ body, principal }) => runTrigger(daemon, name, body, principal),
    });
  }

  api.route({
    method: 'POST',
    url: '/v1/services/:id/hold',
    tag: 'operator',
    summary: 'Suspend a service by hand (operator hold)',
    description:
      'Sets services.operator_hold and suspends the service; the control-plane suspension is queued as an effect (effectKey) and applied once, retried while the control plane is away; the timeline shows effect-applied with that key. Payment never lifts the hold. Body repeats the account id.',
    params: idParams,
    body: confirmBody,
    status: 202,
    responses: {
      202: 'Held; control-plane effect queued (changed=false, effectKey=null when it already was)',
      404: 'No such service',
      409: 'Service released',
    },
    handler: async ({ params, body, principal }) =>
      setOperatorHold(daemon, params.id, true, body, actorName(principal)),
  });

  api.route({
    method: 'DELETE',
    url: '/v1/services/:id/hold',
    tag: 'operator',
    summary: 'Release an operator hold',
    description:
      'Clears services.operator_hold; the service resumes unless overdue enforcement also holds it (the resume is queued as an effect, effectKey, behind any older effect on the service). Body repeats the account id.',
    params: idParams,
    body: confirmBody,
    status: 202,
    responses: {
      202: 'Released; control-plane effect queued when the service resumes (changed=false when there was no hold)',
      404: 'No such service',
      409: 'Service released',
    },
    handler: async ({ params, body, principal }) =>
      setOperatorHold(daemon, params.id, false, body, actorName(principal)),
  });

  api.route({
    method: 'POST',
    url: '/v1/studio-instances/:id/release',
    tag: 'operator',
    summary: 'Release a studio instance now (final)',
    description:
      'Brings a scheduled R9 release forward to now and evaluates the account, so the release goes through the normal effect path (re-checked, idempotent, customer notified). Only an instance with a pending overdue release can be released; release is final. Body repeats the account id.',
    params: idParams,
    body: confirmBody,
    status: 202,
    responses: {
      202: 'Release due now; evaluation enqueued',
      404: 'No such instance',
      409: 'No release pending (account not overdue, or already released)',
    },
    handler: async ({ params, body, principal }) =>
      releaseStudioNow(daemon, params.id, body, actorName(principal)),
  });

  api.route({
    method: 'POST',
    url: '/v1/outbox/:key/retry',
    tag: 'operator',
    summary: 'Retry a failed effect or message',
    description:
      "Sends a failed control-plane effect, or a failed or undeliverable message, back to pending by its key (the timeline shows the keys); the relay dispatches it again. The effect is re-checked against its service at the claim (a suspension since paid off becomes a no-op); the message is re-checked like a first attempt (superseded when no longer true) and goes to the account's current address. A message is refused while its address is marked bounced or opted out, and when its fallback reached the customer. The timeline shows operator-retry. Body repeats the account id.",
    params: keyParams,
    body: confirmBody,
    status: 202,
    responses: {
      202: 'Pending again; dispatched by the relay',
      404: 'No effect or message has this key',
      409: 'Not failed, not retryable (a timer), or refused (contact marked, fallback sent)',
    },
    handler: async ({ params, body, principal }) =>
      retryFailed(daemon, params.key, body, actorName(principal)),
  });
}
