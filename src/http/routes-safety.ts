import { z } from 'zod';
import {
  readControlState,
  recentControlEvents,
  setEnforcementMode,
  shadowReport,
} from '../adapters/db/control-store';
import { ENFORCEMENT_MODES } from '../adapters/db/schema';
import { enqueueFreshScans } from '../adapters/queue/queues';
import { parseDuration } from '../config';
import type { Daemon } from '../daemon';
import { HttpError, instantSchema, noteSchema, type Api } from './api';
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

/** The start of a report window: `since` is a duration back from `now`, or an instant. */
export function reportStart(since: string, now: Date): Date {
  const ms = parseDuration(since);
  return ms === undefined ? new Date(since) : new Date(now.getTime() - ms);
}

export function registerSafetyRoutes(api: Api, daemon: Daemon): void {
  const { db, queues, clock } = daemon.ctx;

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
    url: '/v1/shadow-report',
    tag: 'safety',
    summary: 'What shadow mode would have done: counts by decision kind, with sample accounts',
    query: reportQuery,
    responses: { 200: 'The report' },
    handler: async ({ query }) => {
      const state = await readControlState(db);
      const report = await shadowReport(db, reportStart(query.since, clock.now()), query.sample);
      return { mode: state.mode, ...report };
    },
  });
}
