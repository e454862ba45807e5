import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { queryRows } from '../adapters/db/client';
import { appendEvent, insertOutbox } from '../adapters/db/daemon-writers';
import { markDaemonTransaction } from '../adapters/db/evaluation';
import { JOB_NAMES } from '../adapters/queue/catalog';
import type { Daemon } from '../daemon';
import { accountParams, HttpError, idSchema, notFound, noteSchema, type Api } from './api';
import { actorName } from './auth';
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

interface ServiceRow {
  id: string;
  account_id: string;
  status: 'active' | 'suspended' | 'released';
  overdue_hold: boolean;
  operator_hold: boolean;
}

/** An operator action names the account it expects the row to be of: a mismatch is 400. */
function confirmAccount(what: string, accountId: string, confirmAccountId: string): void {
  if (accountId === confirmAccountId) return;
  const message = `must repeat the ${what}'s account id`;
  throw new HttpError(400, 'bad-request', `confirmAccountId ${message}`, {
    issues: [{ path: 'body.confirmAccountId', message }],
  });
}

export function registerOperatorRoutes(api: Api, daemon: Daemon): void {
  const { db } = daemon.ctx;

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

  // Operator hold (R7: never lifted by payment). The service row changes and the control-plane
  // effect is queued in one transaction; the effect is carried out like every other (claimed under
  // a lease, called with no transaction open, behind any older effect on the service). The answer
  // is 202 with the effect's key; the timeline shows `effect-applied` with that key when done.
  const hold = (on: boolean) =>
    async function (
      serviceId: string,
      body: z.infer<typeof confirmBody>,
      actor: string,
    ): Promise<unknown> {
      const result = await db.transaction(async (tx) => {
        await markDaemonTransaction(tx);
        const [svc] = await queryRows<ServiceRow>(
          tx,
          sql`select id, account_id, status, overdue_hold, operator_hold
                from services where id = ${serviceId} for update`,
        );
        if (svc === undefined) throw notFound('service', serviceId);
        confirmAccount('service', svc.account_id, body.confirmAccountId);
        if (svc.status === 'released') {
          throw new HttpError(409, 'released', `service ${serviceId} was released`);
        }
        if (svc.operator_hold === on) {
          return {
            changed: false,
            accountId: svc.account_id,
            status: svc.status,
            effectKey: null,
          };
        }
        const suspended = on || svc.overdue_hold;
        await tx.execute(sql`
          update services
             set operator_hold = ${on},
                 status = ${suspended ? 'suspended' : 'active'},
                 suspended_at = case when ${suspended} and status <> 'suspended' then now() else suspended_at end,
                 resumed_at = case when not ${suspended} then now() else resumed_at end,
                 updated_at = now()
           where id = ${serviceId}`);
        const eventId = await appendEvent(tx, {
          accountId: svc.account_id,
          kind: on ? 'operator-hold' : 'operator-hold-released',
          actor,
          detail: { serviceId, ...(body.reason ? { reason: body.reason } : {}) },
        });
        // Only a change of the service's state reaches the control plane: releasing an operator
        // hold while overdue still holds the service changes nothing there.
        const op = on ? (svc.overdue_hold ? null : 'suspend') : suspended ? null : 'resume';
        let effectKey: string | null = null;
        if (op !== null) {
          effectKey = `operator-${op}-v1-${serviceId}-${eventId ?? 0}`;
          await insertOutbox(tx, {
            idempotencyKey: effectKey,
            kind: 'control-plane',
            accountId: svc.account_id,
            payload: {
              op,
              serviceId,
              actor,
              reason: on ? 'operator-hold' : 'operator-hold-released',
            },
          });
        }
        return {
          changed: true,
          accountId: svc.account_id,
          status: suspended ? 'suspended' : 'active',
          effectKey,
        };
      });
      if (result.effectKey !== null) daemon.ctx.relay.request();
      await daemon.evaluateSoon(result.accountId, actor);
      return { serviceId, operatorHold: on, ...result };
    };
  const placeHold = hold(true);
  const liftHold = hold(false);

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
      placeHold(params.id, body, actorName(principal)),
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
    handler: async ({ params, body, principal }) => liftHold(params.id, body, actorName(principal)),
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
    handler: async ({ params, body, principal }) => {
      const actor = actorName(principal);
      const accountId = await db.transaction(async (tx) => {
        await markDaemonTransaction(tx);
        const [inst] = await queryRows<{
          account_id: string;
          release_due_at: Date | string | null;
          released_at: Date | string | null;
        }>(
          tx,
          sql`select account_id, release_due_at, released_at from studio_instances
               where id = ${params.id} for update`,
        );
        if (inst === undefined) throw notFound('studio instance', params.id);
        confirmAccount('instance', inst.account_id, body.confirmAccountId);
        if (inst.released_at !== null) {
          throw new HttpError(409, 'released', `studio instance ${params.id} is already released`);
        }
        if (inst.release_due_at === null) {
          throw new HttpError(
            409,
            'no-release-pending',
            'no release is pending: a studio is released only after its overdue suspension',
          );
        }
        await tx.execute(sql`
          update studio_instances set release_due_at = least(release_due_at, now()), updated_at = now()
           where id = ${params.id}`);
        await appendEvent(tx, {
          accountId: inst.account_id,
          kind: 'operator-release-now',
          actor,
          detail: {
            instanceId: params.id,
            scheduledFor: new Date(inst.release_due_at).toISOString(),
            ...(body.reason ? { reason: body.reason } : {}),
          },
        });
        return inst.account_id;
      });
      await daemon.evaluateSoon(accountId, actor);
      return { instanceId: params.id, accountId, releaseDue: 'now' };
    },
  });
}
