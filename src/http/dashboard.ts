import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { formatJob } from '@bull-board/api/dist/handlers/queues.js';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { appendEvent } from '../adapters/db/daemon-writers';
import {
  catalog,
  isJobName,
  jobsOfQueue,
  QUEUES,
  type JobName,
  type QueueName,
} from '../adapters/queue/catalog';
import { QueueSet } from '../adapters/queue/queues';
import { settingProblem } from '../config';
import { SCHEDULER_IDS, type Daemon } from '../daemon';
import { apiErrorHandler, HttpError } from './api';
import { actorName, guard, isMutating, type Authenticator } from './auth';
import { CONSOLE_PATH, DASHBOARD_PATH, SAFETY_PATH } from './paths';
import { manualSchema, prepareTrigger, recordTrigger } from './triggers';

/**
 * The queue dashboard (bull-board) at /admin/queues, behind HTTP Basic (see auth.ts), with every
 * queue of the QueueSet.
 *
 * - The viewer account is read-only: its mutating requests are refused (403) and the queue list
 *   it receives says `readOnlyMode`, so the UI hides the buttons.
 * - The add-job form is checked by the catalog's schema before bull-board adds the job: the name
 *   must be a job of that queue, the data its payload (plus `confirmAccountId` for destructive
 *   jobs); `origin` becomes `operator:<name>` and the job options are the catalog's (evaluations
 *   deduplicated per account) — the same path as POST /v1/jobs/{name}. Editing a job's data is
 *   checked the same way.
 * - A scheduler edit must be an interval (`every`, ms) that passes the check of its setting
 *   (SCAN_INTERVAL or PLAN_SCAN_INTERVAL, minimums included); cron patterns are refused.
 * - "Run now" of a scheduler adds its job with `origin: operator:<name>`, not the scheduler's
 *   `origin: scheduler`, so the job itself says who started it.
 * - Every successful mutating action (add, retry, promote, clean, pause, run a scheduler...) is
 *   written to the enforcement event log with the operator's name.
 */

export { DASHBOARD_PATH };

/** The setting each job scheduler's interval comes from. */
const SCHEDULER_SETTING = {
  [SCHEDULER_IDS.balance]: 'SCAN_INTERVAL',
  [SCHEDULER_IDS.plans]: 'PLAN_SCAN_INTERVAL',
} as const;

const schedulerEditBody = z.object({
  every: z.union([z.number(), z.string()]).optional(),
  pattern: z.string().optional().nullable(),
  tz: z.string().optional().nullable(),
  limit: z.unknown().optional(),
  endDate: z.unknown().optional(),
});

const API_PREFIX = `${DASHBOARD_PATH}/api/queues/`;

const addJobBody = z.object({
  name: z.string(),
  data: z.unknown().optional(),
  options: z.record(z.string(), z.unknown()).optional(),
});

/** Jobs that may be added to a queue: its catalog jobs; notifications to either channel queue. */
function jobsAllowedIn(queue: string): string[] {
  const queues = Object.values(QUEUES) as string[];
  if (!queues.includes(queue)) return [];
  const names: string[] = jobsOfQueue(queue as QueueName);
  if (
    (queue === QUEUES.notifyEmail || queue === QUEUES.notifySms) &&
    !names.includes('send-notification')
  ) {
    names.push('send-notification');
  }
  return names;
}

/**
 * What the add-job form starts with for each job: valid input to edit (the form pre-fills the
 * first example of the queue's schema; without one it would build `""` for every field, which
 * fails the check it is then sent to).
 */
export const JOB_EXAMPLES: Readonly<Record<JobName, Record<string, unknown>>> = {
  'balance-scan': {},
  'plan-scan': {},
  'outbox-relay': {},
  prune: {},
  'evaluate-account': { accountId: 'acct-123' },
  'evaluate-batch': { accountIds: ['acct-123', 'acct-456'] },
  'control-plane': { outboxKey: 'suspend-v1-svc-123-1', confirmAccountId: 'acct-123' },
  'send-notification': { outboxKey: 'notify-v1-acct-123-overdue-reminder-1' },
};

/** What each job does, shown as the form's hint. */
const JOB_HINTS: Readonly<Record<JobName, string>> = {
  'balance-scan': 'Scan every account now (same as the scheduler). No data needed.',
  'plan-scan': 'Scan plan quotas and expiries now. No data needed.',
  'outbox-relay': 'Relay pending effects now. No data needed.',
  prune: 'Delete finished rows past their retention now (same as the scheduler). No data needed.',
  'evaluate-account': 'Evaluate one account now: accountId.',
  'evaluate-batch': 'Evaluate several accounts now, in one transaction: accountIds (1 to 1,000).',
  'control-plane':
    'Run one control-plane effect again: outboxKey of the effect, confirmAccountId = its account.',
  'send-notification': 'Resend one message: outboxKey of the notification.',
};

/** Fields the form never sets: origin is the operator's name; outboxKey/at belong to the relay. */
const HIDDEN_FIELDS: Readonly<Partial<Record<JobName, readonly string[]>>> = {
  'evaluate-account': ['origin', 'outboxKey', 'at'],
  'evaluate-batch': ['origin'],
  'balance-scan': ['origin'],
  'plan-scan': ['origin'],
  'outbox-relay': ['origin'],
  prune: ['origin'],
};

function jobSchema(name: JobName): Record<string, unknown> {
  let schema = manualSchema(name);
  const hidden = HIDDEN_FIELDS[name] ?? [];
  if (hidden.length > 0) {
    schema = schema.omit(Object.fromEntries(hidden.map((f) => [f, true])) as never);
  }
  if (name !== 'control-plane') schema = schema.omit({ confirmAccountId: true } as never);
  return {
    ...z.toJSONSchema(schema, { io: 'input' }),
    title: name,
    description: JOB_HINTS[name],
    examples: [JOB_EXAMPLES[name]],
  };
}

function jsonSchemaOfQueue(queue: QueueName): Record<string, unknown> {
  const names = jobsAllowedIn(queue).filter(isJobName);
  if (names.length === 1 && names[0] !== undefined) return jobSchema(names[0]);
  const first = names[0];
  return {
    anyOf: names.map(jobSchema),
    description: `Jobs: ${names.join(', ')}. Set the job name above (left empty: ${String(first)}, the example shown); the data of each is in its schema.`,
    examples: first === undefined ? [] : [JOB_EXAMPLES[first]],
  };
}

export async function mountDashboard(
  app: FastifyInstance,
  deps: { daemon: Daemon; auth: Authenticator },
): Promise<void> {
  const { daemon, auth } = deps;
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  const adapters = new Map(
    Object.entries(daemon.ctx.queues.byName).map(([name, queue]) => [
      queue.name,
      new BullMQAdapter(queue, {
        readOnlyMode: false,
        allowRetries: true,
        description: `Jobs: ${jobsAllowedIn(name).join(', ')}`,
        jobDataSchema: jsonSchemaOfQueue(name as QueueName),
      }),
    ]),
  );
  createBullBoard({
    queues: [...adapters.values()],
    // @bull-board/fastify 9.10.1 pins its own copy of @bull-board/api: same shape, distinct types.
    serverAdapter: serverAdapter as unknown as Parameters<
      typeof createBullBoard
    >[0]['serverAdapter'],
    options: {
      uiConfig: {
        boardTitle: 'overdue-worker',
        // The user menu's links to the server-rendered pages beside the queues.
        miscLinks: [
          { text: 'Console', url: CONSOLE_PATH },
          { text: 'Safety valves', url: SAFETY_PATH },
        ],
      },
    },
  });
  // bull-board's own handler answers with the thrown message (an ioredis "Connection is closed",
  // a script error): a viewer sees a generic message, the log gets the error.
  const boardLog = daemon.ctx.logger.child({ component: 'dashboard' });
  serverAdapter.setErrorHandler((error: Error & { statusCode?: number }) => {
    const status = error.statusCode !== undefined && error.statusCode < 500 ? 400 : 500;
    if (status >= 500) boardLog.error({ err: error }, 'dashboard request failed');
    return {
      status: status,
      body: {
        error: status >= 500 ? 'internal' : 'bad-request',
        message: status >= 500 ? 'internal error (see the daemon log)' : 'bad request',
      },
    };
  });

  const queueOfRoute = (req: FastifyRequest): { queue: string; rest: string } | null => {
    const path = req.url.split('?')[0] ?? '';
    if (!path.startsWith(API_PREFIX)) return null;
    const [queue, ...rest] = path.slice(API_PREFIX.length).split('/');
    return queue === undefined ? null : { queue: decodeURIComponent(queue), rest: rest.join('/') };
  };

  await app.register(async (scope) => {
    scope.addHook('onRequest', guard(auth, { allowBearer: false }));

    // Validate what bull-board would add or write, then let it do so.
    scope.addHook('preHandler', async (req: FastifyRequest, reply: FastifyReply) => {
      try {
        const ran = await runSchedulerNow(req);
        if (ran !== null) return reply.code(200).send(ran);
        await checkMutation(req);
      } catch (error) {
        // Answered here: bull-board's own error handler would turn these into 500s.
        return apiErrorHandler(error as Error, req, reply);
      }
      return undefined;
    });
    /** "Run now" of a job scheduler, answered here so the job's origin names the operator. */
    const runSchedulerNow = async (req: FastifyRequest): Promise<unknown> => {
      const principal = req.principal;
      const target = queueOfRoute(req);
      const m = target ? /^job-schedulers\/([^/]+)\/run$/.exec(target.rest) : null;
      if (principal === undefined || req.method !== 'PUT' || !target || !m?.[1]) return null;
      const queue = Object.values(daemon.ctx.queues.byName).find((q) => q.name === target.queue);
      const adapter = adapters.get(target.queue);
      const scheduler = queue ? await queue.getJobScheduler(decodeURIComponent(m[1])) : undefined;
      if (!queue || !adapter || !scheduler || !isJobName(scheduler.name)) return null; // 404
      const data = catalog[scheduler.name].payload.parse({
        ...(scheduler.template?.data as Record<string, unknown> | undefined),
        origin: actorName(principal),
      }) as Record<string, unknown>;
      const job = await queue.add(scheduler.name, data, scheduler.template?.opts);
      return { job: formatJob(job as Parameters<typeof formatJob>[0], adapter) };
    };

    const checkMutation = async (req: FastifyRequest): Promise<void> => {
      const principal = req.principal;
      if (principal === undefined || !isMutating(req.method)) return;
      const target = queueOfRoute(req);
      if (target === null) return;
      if (req.method === 'POST' && target.rest === 'add') {
        const body = addJobBody.safeParse(req.body ?? {});
        if (!body.success)
          throw new HttpError(400, 'bad-request', 'expected {name, data, options}');
        const allowed = jobsAllowedIn(target.queue);
        // The form sends `__default__` when the job name is left empty: the queue's first job,
        // the one whose example the form starts from.
        const given = body.data.name.trim();
        const name = given === '' || given === '__default__' ? (allowed[0] ?? given) : given;
        if (!isJobName(name) || !allowed.includes(name)) {
          throw new HttpError(400, 'bad-request', `name: must be one of ${allowed.join(', ')}`, {
            issues: [{ path: 'name', message: `must be one of ${allowed.join(', ')}` }],
          });
        }
        const prepared = await prepareTrigger(daemon, name, body.data.data, principal, 'data');
        if ((prepared.queue ?? catalog[name].queue) !== target.queue) {
          const right = prepared.queue ?? catalog[name].queue;
          throw new HttpError(400, 'bad-request', `this job belongs to queue ${right}`, {
            issues: [{ path: 'name', message: `this job belongs to queue ${right}` }],
          });
        }
        await recordTrigger(daemon, prepared, principal, 'dashboard');
        req.body = { name, data: prepared.data, options: QueueSet.optionsFor(name, prepared.opts) };
        return;
      }
      const schedulerEdit = /^job-schedulers\/([^/]+)$/.exec(target.rest);
      if (req.method === 'PATCH' && schedulerEdit?.[1] !== undefined) {
        const id = decodeURIComponent(schedulerEdit[1]);
        const setting = (
          SCHEDULER_SETTING as Record<string, 'SCAN_INTERVAL' | 'PLAN_SCAN_INTERVAL'>
        )[id];
        if (setting === undefined) return; // not ours: bull-board answers 404
        const body = schedulerEditBody.safeParse(req.body ?? {});
        const refuse = (path: string, message: string): never => {
          throw new HttpError(400, 'bad-request', `${path}: ${message}`, {
            issues: [{ path, message }],
          });
        };
        if (!body.success) refuse('body', 'expected {every}');
        const edit = body.data!;
        if (typeof edit.pattern === 'string' && edit.pattern.trim() !== '') {
          refuse('pattern', `cron patterns are not accepted; give every (ms), as ${setting}`);
        }
        const every = Number(edit.every);
        if (!Number.isSafeInteger(every) || every <= 0) {
          refuse('every', 'must be a whole number of milliseconds');
        }
        const problem = settingProblem(setting, `${every}ms`);
        if (problem !== null) refuse('every', `${problem} (as ${setting})`);
        return;
      }
      if (target.rest.endsWith('/update-data')) {
        const jobId = target.rest.slice(0, -'/update-data'.length);
        const queue = Object.values(daemon.ctx.queues.byName).find((q) => q.name === target.queue);
        const job = queue ? await queue.getJob(decodeURIComponent(jobId)) : undefined;
        if (job === undefined || !isJobName(job.name)) return; // bull-board answers 404
        const data = (req.body as { jobData?: unknown } | undefined)?.jobData;
        const parsed = catalog[job.name].payload.safeParse(data);
        if (!parsed.success) {
          throw new HttpError(400, 'bad-request', `jobData: not a valid ${job.name} payload`, {
            issues: parsed.error.issues.map((i) => ({
              path: ['jobData', ...i.path.map(String)].join('.'),
              message: i.message,
            })),
          });
        }
      }
    };

    // The viewer sees the board read-only.
    scope.addHook('onSend', async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      if (
        req.principal?.role !== 'viewer' ||
        req.method !== 'GET' ||
        (req.url.split('?')[0] ?? '') !== `${DASHBOARD_PATH}/api/queues` ||
        typeof payload !== 'string' ||
        reply.statusCode !== 200
      ) {
        return payload;
      }
      const body = JSON.parse(payload) as { queues?: Record<string, unknown>[] };
      for (const q of body.queues ?? []) {
        q.readOnlyMode = true;
        q.allowRetries = false;
        q.allowCompletedRetries = false;
      }
      return JSON.stringify(body);
    });

    // Audit: who did what on the board.
    scope.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
      if (!req.principal || !isMutating(req.method) || reply.statusCode >= 400) return;
      const target = queueOfRoute(req);
      if (target?.rest === 'add') return; // recorded with its account by recordTrigger
      await appendEvent(daemon.ctx.db, {
        accountId: '*',
        kind: 'operator-dashboard',
        actor: actorName(req.principal),
        detail: {
          method: req.method,
          path: (req.url.split('?')[0] ?? '').slice(0, 300),
          ...(target ? { queue: target.queue } : {}),
        },
      }).catch((err: unknown) => req.log.error({ err }, 'cannot record a dashboard action'));
    });

    await scope.register(serverAdapter.registerPlugin(), { prefix: DASHBOARD_PATH });
    // bull-board sets its own error handler inside its plugin; ours answers the hooks' errors.
    scope.setErrorHandler(apiErrorHandler);
  });
}
