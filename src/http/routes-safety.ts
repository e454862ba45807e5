import { z } from 'zod';
import {
  liftPause,
  listPauses,
  pauseKindProblem,
  readControlState,
  setPause,
  recentControlEvents,
  setEnforcementMode,
  shadowReport,
  type PauseKind,
} from '../adapters/db/control-store';
import { ENFORCEMENT_MODES } from '../domain/modes';
import { enqueueFreshScans } from '../adapters/queue/queues';
import { parseDuration, RULE_SETTING_NAMES, windowStart } from '../config';
import { PAUSE_KINDS } from '../adapters/db/schema';
import { proposedRules } from '../config-overrides';
import { whatIf, WHAT_IF_PAGE } from '../adapters/db/what-if';
import type { Daemon } from '../daemon';
import { badRequest, HttpError, instantSchema, noteSchema, type Api } from './api';
import { actorName } from './auth';

/** Safety valves: the enforcement mode and what shadow mode would have done. */

const modeBody = z
  .object({
    mode: z.enum(ENFORCEMENT_MODES).describe('enforce, shadow or off'),
    reason: noteSchema.min(1, 'must say why').describe('Why, for the event log (required)'),
    expectedVersion: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Change only if the mode is still at this version (409 otherwise)'),
  })
  .strict();

/** How far back a shadow report may look: a duration (24h, 7d) or an instant. */
const MAX_REPORT_MS = 90 * 24 * 3_600_000;
const sinceSchema = z.union([
  instantSchema,
  z.string().refine((t) => {
    const ms = parseDuration(t);
    return ms !== undefined && ms > 0 && ms <= MAX_REPORT_MS;
  }, 'must be a duration up to 90d (24h, 7d) or an ISO 8601 instant with offset'),
]);

const reportQuery = z
  .object({
    since: sinceSchema.default('24h').describe('A duration back from now (24h) or an instant'),
    sample: z.coerce.number().int().min(0).max(100).default(10),
  })
  .strict();

const whatIfBody = z
  .object({
    set: z
      .record(z.string().max(100), z.string().max(1_000))
      .refine((o) => Object.keys(o).length > 0, 'name at least one setting')
      .describe(
        `Proposed policy settings, as in the environment ({"PROTECTION_DURATION": "3d"}); one of ${RULE_SETTING_NAMES.join(', ')}`,
      ),
    at: instantSchema.optional().describe('Evaluate at this instant (default now)'),
    sample: z.number().int().min(0).max(100).default(10),
  })
  .strict();

const pauseKind = z
  .string()
  .superRefine((k, ctx) => {
    const problem = pauseKindProblem(k);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  })
  .transform((k) => k as PauseKind);

const pauseBody = z
  .object({
    kind: pauseKind.describe(PAUSE_KINDS.join(', ')),
    reason: noteSchema.min(1, 'must say why').describe('Why, for the event log (required)'),
  })
  .strict();

export function registerSafetyRoutes(api: Api, daemon: Daemon): void {
  const { db, queues, clock, config } = daemon.ctx;

  api.route({
    method: 'GET',
    url: '/v1/enforcement-mode',
    tag: 'safety',
    summary: 'The enforcement mode, who set it and why, and its recent changes',
    responses: { 200: 'The mode' },
    handler: async () => {
      const state = await readControlState(db);
      return { ...state, changes: await recentControlEvents(db, 20) };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/enforcement-mode',
    tag: 'safety',
    summary: 'Set the enforcement mode (enforce, shadow, off)',
    description:
      'Every daemon obeys it from its next evaluation and its next claim of an effect or a message: in shadow or off, effects and messages not yet out of the outbox wait (they go out, re-checked, once the mode is enforce again). Back to enforce, every account is evaluated afresh by a scan. The change is recorded with who and why; with expectedVersion, a change made meanwhile by someone else answers 409.',
    body: modeBody,
    responses: {
      200: 'Changed, or already in that mode',
      409: 'Changed by someone else since expectedVersion',
    },
    handler: async ({ body, principal }) => {
      const actor = actorName(principal);
      const result = await setEnforcementMode(db, {
        mode: body.mode,
        actor,
        reason: body.reason,
        ...(body.expectedVersion !== undefined ? { expectedVersion: body.expectedVersion } : {}),
      });
      if (result.kind === 'conflict') {
        throw new HttpError(
          409,
          'conflict',
          `the mode was changed meanwhile (now ${result.state.mode}, version ${result.state.version})`,
        );
      }
      let scans = false;
      if (result.kind === 'changed' && result.state.mode === 'enforce') {
        await enqueueFreshScans(queues, actor);
        scans = true;
      }
      return { changed: result.kind === 'changed', ...result.state, freshScan: scans };
    },
  });

  api.route({
    method: 'GET',
    url: '/v1/pauses',
    tag: 'safety',
    summary: 'The kinds of effect paused now, by whom and why',
    responses: { 200: 'The pauses' },
    handler: async () => ({ pauses: await listPauses(db) }),
  });

  api.route({
    method: 'POST',
    url: '/v1/pauses',
    tag: 'safety',
    summary: 'Pause suspensions, studio releases or customer messages',
    description:
      'While paused, those effects are held at their claim, not dropped, and go out in order once the pause is lifted, re-checked against the account at that moment. Resumes are never paused. Applies to every effect that has not left the outbox.',
    body: pauseBody,
    status: 201,
    responses: { 201: 'Paused (or already paused: `paused` false)' },
    handler: async ({ body, principal }) => {
      const paused = await setPause(db, {
        kind: body.kind,
        actor: actorName(principal),
        reason: body.reason,
      });
      return { paused, pauses: await listPauses(db) };
    },
  });

  api.route({
    method: 'DELETE',
    url: '/v1/pauses/:kind',
    tag: 'safety',
    summary: 'Lift a pause: the held effects go out, re-checked',
    params: z.object({ kind: pauseKind }).strict(),
    body: z.object({ reason: noteSchema.optional() }).strict(),
    responses: { 200: 'Lifted (or was not paused: `lifted` false)' },
    handler: async ({ params, body, principal }) => {
      const lifted = await liftPause(db, {
        kind: params.kind,
        actor: actorName(principal),
        reason: body.reason ?? null,
      });
      return { lifted, pauses: await listPauses(db) };
    },
  });

  api.route({
    method: 'POST',
    url: '/v1/what-if',
    tag: 'safety',
    summary: 'How the fleet would be decided under proposed policy settings (read-only)',
    description:
      'Evaluates every account with the current and the proposed rule settings in read-only transactions that take no lock, and answers per decision kind how many accounts would get it more or less often, with a sample of accounts and amounts. Nothing is written. A large fleet takes a while: HTTP_REQUEST_TIMEOUT does not bound the answer, but a proxy may; `overdue-worker what-if` does the same from a terminal with a progress bar.',
    body: whatIfBody,
    responses: { 200: 'The comparison', 400: 'A proposed setting is refused (named)' },
    handler: async ({ body }) => {
      const proposed = proposedRules(
        config,
        Object.entries(body.set).map(([k, v]) => `${k}=${v}`),
      );
      if (!proposed.ok) {
        throw badRequest(
          proposed.problems.map((p) => ({ path: `body.set.${p.name}`, message: p.message })),
        );
      }
      const started = Date.now();
      const report = await whatIf(db, config.rules, proposed.rules, {
        at: body.at === undefined ? clock.now() : new Date(body.at),
        pageSize: WHAT_IF_PAGE,
        sample: body.sample,
      });
      return { ...report, proposed: proposed.changes, ms: Date.now() - started };
    },
  });

  api.route({
    method: 'GET',
    url: '/v1/shadow-report',
    tag: 'safety',
    summary: 'What shadow mode would have done: counts by decision kind, with sample accounts',
    query: reportQuery,
    responses: { 200: 'The report' },
    handler: async ({ query }) => {
      const state = await readControlState(db);
      const start = windowStart(query.since, clock.now());
      // The query's schema admits only a duration or an instant.
      if (start === undefined) throw new Error(`since ${query.since} passed its check unparsed`);
      const report = await shadowReport(db, start, query.sample);
      return { mode: state.mode, ...report };
    },
  });
}
