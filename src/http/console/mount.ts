import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { readBreaker } from '../../adapters/db/breaker-store';
import {
  fleetStateCounts,
  hourlyEnforcement,
  pendingReleases,
  recentFailures,
  searchAccounts,
} from '../../adapters/db/console-queries';
import { listPauses, readControlState } from '../../adapters/db/control-store';
import type { Daemon } from '../../daemon';
import { HttpError, idSchema, noteSchema } from '../api';
import { actorName, type Authenticator, type Principal } from '../auth';
import { formScope } from '../form-pages';
import { releaseStudioNow, retryFailed, setOperatorHold } from '../operator-actions';
import { runTrigger } from '../triggers';
import { loadAccountView, renderAccount } from './account-page';
import { e, uiLang, type UiLang } from './format';
import { ACCOUNTS_PATH, CONSOLE_PATH, layout, noticeHtml } from './layout';
import { renderOverview } from './overview-page';
import { renderSearch } from './search-page';
import { strings } from './strings';

/**
 * The operator console at /admin (fleet overview), /admin/accounts (search) and
 * /admin/accounts/:id (one account's story and actions), behind the dashboard's authentication.
 * Server-rendered HTML with plain forms and no script; each form calls the same functions as the
 * /v1 API and answers with a 303 back to the account page, which says what was done. The
 * read-only viewer sees the pages without forms, and its posts are refused by the guard (403).
 */

/** The console's own paths (not /admin/queues, bull-board, nor /admin/safety). */
export function isConsolePage(url: string): boolean {
  const path = url.split('?')[0] ?? '';
  return path === CONSOLE_PATH || path === ACCOUNTS_PATH || path.startsWith(`${ACCOUNTS_PATH}/`);
}

const SEARCH_PAGE_SIZE = 25;
/** Search pages beyond this are not served (an offset is read, then dropped). */
const SEARCH_MAX_PAGE = 40;
const COUNT_CAP = 100_000;
const HOURS = 48;
const HOURLY_CAP = 50_000;
const RELEASES_SHOWN = 50;
const FAILURES_SHOWN = 20;

const html = (reply: FastifyReply, body: string, code = 200) =>
  reply.code(code).type('text/html; charset=utf-8').send(body);

const langOf = (req: FastifyRequest): UiLang => uiLang(req.headers['accept-language']);
const canAct = (req: FastifyRequest): boolean => req.principal?.role === 'operator';
const accountUrl = (id: string, query = ''): string =>
  `${ACCOUNTS_PATH}/${encodeURIComponent(id)}${query}`;

const holdForm = z.object({
  serviceId: idSchema,
  confirmAccountId: idSchema,
  reason: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v))
    .pipe(noteSchema.optional()),
});
const releaseForm = z.object({ instanceId: idSchema, confirmAccountId: z.string().max(200) });
const retryForm = z.object({
  key: z.string().min(1).max(255),
  confirmAccountId: idSchema,
});

type Action = (accountId: string, body: unknown, principal: Principal) => Promise<string>;

function parsed<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    throw new HttpError(
      400,
      'bad-request',
      r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  }
  return r.data;
}

function actions(daemon: Daemon): Record<string, Action> {
  const hold =
    (on: boolean): Action =>
    async (accountId, body, principal) => {
      const f = parsed(holdForm, body);
      if (f.confirmAccountId !== accountId) {
        throw new HttpError(400, 'bad-request', 'the form is for another account');
      }
      const r = await setOperatorHold(daemon, f.serviceId, on, f, actorName(principal));
      if (!r.changed) return `Service ${f.serviceId}: nothing to change.`;
      return on
        ? `Operator hold placed on ${f.serviceId}.`
        : `Operator hold released on ${f.serviceId}; the service is ${r.status}.`;
    };
  return {
    evaluate: async (accountId, _body, principal) => {
      await runTrigger(daemon, 'evaluate-account', { accountId }, principal);
      return 'Evaluation enqueued.';
    },
    hold: hold(true),
    'release-hold': hold(false),
    'release-studio': async (accountId, body, principal) => {
      const f = parsed(releaseForm, body);
      if (f.confirmAccountId.trim() !== accountId) {
        throw new HttpError(400, 'bad-request', 'type the account id exactly to release a studio');
      }
      await releaseStudioNow(
        daemon,
        f.instanceId,
        { confirmAccountId: accountId },
        actorName(principal),
      );
      return `Studio instance ${f.instanceId} is released now; the account is being evaluated.`;
    },
    retry: async (accountId, body, principal) => {
      const f = parsed(retryForm, body);
      if (f.confirmAccountId !== accountId) {
        throw new HttpError(400, 'bad-request', 'the form is for another account');
      }
      const r = await retryFailed(daemon, f.key, f, actorName(principal));
      return `${r.what === 'message' ? 'Message' : 'Effect'} ${f.key} is pending again (was ${r.previousStatus}); it goes out with the next relay pass.`;
    },
  };
}

export async function mountConsole(
  app: FastifyInstance,
  deps: { daemon: Daemon; auth: Authenticator },
): Promise<void> {
  const { daemon, auth } = deps;
  const db = daemon.ctx.db;
  await app.register((scope, _opts, ready) => {
    formScope(scope, auth, 100_000);

    scope.get(CONSOLE_PATH, async (req, reply) => {
      const lang = langOf(req);
      const [counts, hourly, releases, failures, control, pauses, breaker] = await Promise.all([
        fleetStateCounts(db, COUNT_CAP),
        hourlyEnforcement(db, HOURS, HOURLY_CAP),
        pendingReleases(db, RELEASES_SHOWN),
        recentFailures(db, FAILURES_SHOWN),
        readControlState(db),
        listPauses(db),
        readBreaker(db, { limit: 1 }),
      ]);
      const view = {
        now: new Date(),
        counts,
        hourly,
        releases,
        failures,
        control,
        pauses,
        breaker,
      };
      return html(
        reply,
        layout(lang, strings(lang).overview, renderOverview(view, lang, canAct(req))),
      );
    });

    scope.get(
      ACCOUNTS_PATH,
      async (req: FastifyRequest<{ Querystring: { q?: string; page?: string } }>, reply) => {
        const lang = langOf(req);
        const q = typeof req.query.q === 'string' ? req.query.q.slice(0, 200) : '';
        const page = Math.min(
          SEARCH_MAX_PAGE,
          Math.max(0, Number.parseInt(req.query.page ?? '0', 10) || 0),
        );
        const result = await searchAccounts(db, q, page, SEARCH_PAGE_SIZE);
        return html(reply, layout(lang, strings(lang).search, renderSearch(q, page, result, lang)));
      },
    );

    const renderAccountPage = async (
      req: FastifyRequest,
      reply: FastifyReply,
      id: string,
      notice: string | null,
      code = 200,
    ) => {
      const lang = langOf(req);
      try {
        const view = await loadAccountView(daemon, id, lang);
        return html(
          reply,
          layout(lang, `${strings(lang).account} ${id}`, renderAccount(view, canAct(req)), notice),
          code,
        );
      } catch (error) {
        if (!(error instanceof HttpError) || error.status !== 404) throw error;
        return html(
          reply,
          layout(
            lang,
            strings(lang).notFound,
            `<p>${e(strings(lang).notFound)} <code>${e(id)}</code></p>`,
          ),
          404,
        );
      }
    };

    scope.get(
      `${ACCOUNTS_PATH}/:id`,
      async (
        req: FastifyRequest<{ Params: { id: string }; Querystring: { done?: string } }>,
        reply,
      ) => {
        const done = typeof req.query.done === 'string' ? req.query.done.slice(0, 300) : null;
        return renderAccountPage(req, reply, req.params.id, noticeHtml(done));
      },
    );

    for (const [name, run] of Object.entries(actions(daemon))) {
      scope.post(
        `${ACCOUNTS_PATH}/:id/${name}`,
        async (req: FastifyRequest<{ Params: { id: string } }>, reply) => {
          const id = req.params.id;
          // The guard let only an operator through; the principal is always set here.
          const principal = req.principal as Principal;
          try {
            const done = await run(id, req.body ?? {}, principal);
            return reply.redirect(accountUrl(id, `?done=${encodeURIComponent(done)}`), 303);
          } catch (error) {
            if (!(error instanceof HttpError) || error.status >= 500) throw error;
            return renderAccountPage(
              req,
              reply,
              id,
              noticeHtml(`Refused: ${error.message}`, true),
              error.status,
            );
          }
        },
      );
    }
    ready();
  });
}
