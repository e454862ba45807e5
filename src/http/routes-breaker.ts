import { z } from 'zod';
import {
  readBreaker,
  resetBreaker,
  settleHeld,
  type HeldSelection,
} from '../adapters/db/breaker-store';
import type { Daemon } from '../daemon';
import { noteSchema, type Api } from './api';
import { actorName } from './auth';

/**
 * The mass-suspension breaker (src/domain/breaker.ts): its state and the decisions it holds;
 * approving, rejecting and closing it. Approving evaluates the accounts again at once: a held
 * decision that is still wanted goes through the normal outbox (re-checked there too); one that
 * is not (the account paid meanwhile) is simply not taken again.
 */

/** Keys named in one request at most (`all` has no limit). */
const MAX_KEYS = 10_000;

const keyList = z
  .array(z.string().min(1).max(300))
  .min(1, 'name at least one held decision')
  .max(MAX_KEYS, `at most ${MAX_KEYS} keys per request; use "all"`);

const selectionBody = <R extends z.ZodType>(reason: R) =>
  z
    .object({
      all: z.literal(true).optional().describe('Every held decision'),
      keys: keyList.optional().describe('The held decisions, by key (GET /v1/breaker lists them)'),
      reason,
    })
    .strict()
    .refine((b) => (b.all === true) !== (b.keys !== undefined), {
      message: 'give either "all": true or "keys", not both',
      path: ['keys'],
    });

const approveBody = selectionBody(noteSchema.optional().describe('Why, for the event log'));
const rejectBody = selectionBody(
  noteSchema.min(1, 'must say why').describe('Why, for the event log (required)'),
);

const listQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
    after: z.coerce.number().int().min(0).optional().describe('Held rows after this id'),
  })
  .strict();

const selectionOf = (b: { all?: true; keys?: string[] }): HeldSelection =>
  b.all === true ? { all: true } : { keys: b.keys ?? [] };

export function registerBreakerRoutes(api: Api, daemon: Daemon): void {
  const { db } = daemon.ctx;

  api.route({
    method: 'GET',
    url: '/v1/breaker',
    tag: 'safety',
    summary: 'The mass-suspension breaker: limits, whether it is tripped, what it holds',
    query: listQuery,
    responses: { 200: 'The breaker and a page of held decisions, oldest first' },
    handler: async ({ query }) =>
      readBreaker(db, { limit: query.limit, ...(query.after ? { afterId: query.after } : {}) }),
  });

  api.route({
    method: 'POST',
    url: '/v1/breaker/approve',
    tag: 'safety',
    summary: 'Approve held suspensions and studio releases (all, or by key)',
    description:
      'The accounts are evaluated again at once; a decision still wanted on their state at that moment goes through the normal outbox, re-checked at its claim. Recorded per account and as a control event with who and why. The breaker stays tripped for new suspensions until reset.',
    body: approveBody,
    responses: { 200: 'Approved: the decisions that were still held' },
    handler: async ({ body, principal }) => {
      const actor = actorName(principal);
      const settled = await settleHeld(
        db,
        'approved',
        selectionOf(body),
        actor,
        body.reason ?? null,
      );
      // Operator evaluations, before scan pages; kept and queued later if Redis is away.
      await daemon.evaluateAccounts(
        settled.map((s) => s.accountId),
        actor,
      );
      return { approved: settled.length, decisions: settled };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/breaker/reject',
    tag: 'safety',
    summary: 'Reject held suspensions and studio releases (all, or by key), saying why',
    description:
      'A rejected decision is not carried out in its overdue episode: the services keep running, the studio is kept. Recorded per account and as a control event with who and why.',
    body: rejectBody,
    responses: { 200: 'Rejected: the decisions that were still held' },
    handler: async ({ body, principal }) => {
      const settled = await settleHeld(
        db,
        'rejected',
        selectionOf(body),
        actorName(principal),
        body.reason,
      );
      return { rejected: settled.length, decisions: settled };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/breaker/reset',
    tag: 'safety',
    summary: 'Close a tripped breaker: new suspensions are admitted again, counted from now',
    description:
      'Held decisions stay held until approved or rejected. Suspensions admitted before the reset no longer count towards the window.',
    body: z
      .object({ reason: noteSchema.min(1, 'must say why').describe('Why (required)') })
      .strict(),
    responses: { 200: 'Closed (or was not tripped: `reset` false)' },
    handler: async ({ body, principal }) => {
      const reset = await resetBreaker(db, actorName(principal), body.reason);
      return { reset, breaker: await readBreaker(db, { limit: 0 }) };
    },
  });
}
