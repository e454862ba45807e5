import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  readBreaker,
  resetBreaker,
  settleHeld,
  type BreakerStatus,
} from '../adapters/db/breaker-store';
import {
  liftPause,
  listPauses,
  pauseKindProblem,
  readControlState,
  setEnforcementMode,
  setPause,
  type ControlState,
  type Pause,
  type PauseKind,
} from '../adapters/db/control-store';
import { PAUSE_KINDS } from '../adapters/db/schema';
import { enqueueFreshScans } from '../adapters/queue/queues';
import type { Daemon } from '../daemon';
import { ENFORCEMENT_MODES } from '../domain/modes';
import { escapeHtml } from '../notify/templates';
import { DASHBOARD_PATH, SAFETY_PATH } from './paths';
import { noteSchema } from './api';
import { actorName, type Authenticator } from './auth';
import { formScope } from './form-pages';

/**
 * The safety valves in the browser, at /admin/safety, beside the queue dashboard and behind the
 * same authentication: the enforcement mode, the pauses and the mass-suspension breaker with what
 * it holds, and forms to change them. Server-rendered HTML with plain forms (no script); each
 * form posts to the same store functions as the /v1 API and answers with a redirect back to the
 * page, which says what was done. The read-only viewer sees the page without its forms, and its
 * posts are refused by the guard (403), as everywhere.
 */

export { SAFETY_PATH };
/** Held decisions listed on the page (the API pages through all of them). */
const HELD_SHOWN = 200;

const e = (v: unknown): string => escapeHtml(String(v));
const form = (action: string, body: string): string =>
  `<form method="post" action="${SAFETY_PATH}/${action}">${body}</form>`;
const reasonField = (required: boolean): string =>
  `<input name="reason" maxlength="500" placeholder="reason${required ? ' (required)' : ''}"${required ? ' required' : ''}>`;

function modeSection(state: ControlState, canAct: boolean): string {
  const options = ENFORCEMENT_MODES.map(
    (m) => `<option${m === state.mode ? ' selected' : ''}>${m}</option>`,
  ).join('');
  return `<section><h2>Enforcement mode: <span class="mode-${e(state.mode)}">${e(state.mode)}</span></h2>
<p>Set by ${e(state.changedBy)} at ${e(state.changedAt.toISOString())}${state.reason !== null ? `: ${e(state.reason)}` : ''}.</p>
${canAct ? form('mode', `<select name="mode">${options}</select> ${reasonField(true)} <button>Set mode</button>`) : ''}
</section>`;
}

function pausesSection(pauses: readonly Pause[], canAct: boolean): string {
  const rows = PAUSE_KINDS.map((kind) => {
    const p = pauses.find((x) => x.kind === kind);
    const state =
      p === undefined
        ? 'running'
        : `<strong>paused</strong> by ${e(p.pausedBy)} at ${e(p.pausedAt.toISOString())}: ${e(p.reason)}`;
    const action = !canAct
      ? ''
      : p === undefined
        ? form(
            'pause',
            `<input type="hidden" name="kind" value="${kind}">${reasonField(true)} <button>Pause</button>`,
          )
        : form(
            'unpause',
            `<input type="hidden" name="kind" value="${kind}">${reasonField(false)} <button>Lift</button>`,
          );
    return `<tr><th>${kind}</th><td>${state}</td><td>${action}</td></tr>`;
  }).join('');
  return `<section><h2>Pauses</h2><p>Resumes are never paused.</p><table>${rows}</table></section>`;
}

function breakerSection(b: BreakerStatus, canAct: boolean): string {
  const state = !b.enabled
    ? 'off'
    : b.tripped
      ? `<strong class="tripped">TRIPPED</strong> at ${e(b.trippedAt?.toISOString())}`
      : 'closed';
  const held = b.held
    .map(
      (h) =>
        `<tr><td>${canAct ? `<input type="checkbox" name="keys" value="${e(h.key)}" form="held-form">` : ''}</td><td>${e(h.kind)}</td><td>${e(h.accountId)}</td><td>${e(h.detail.overdueMinor ?? '')}</td><td><code>${e(h.key)}</code></td><td>${e(h.decidedAt.toISOString())}</td></tr>`,
    )
    .join('');
  const more =
    b.heldCount > b.held.length
      ? `<p>… and ${b.heldCount - b.held.length} more (GET /v1/breaker pages through them).</p>`
      : '';
  const actions = !canAct
    ? ''
    : `<form id="held-form" method="post" action="${SAFETY_PATH}/breaker"></form>
<p><select name="action" form="held-form"><option value="approve">Approve</option><option value="reject">Reject</option></select>
<select name="scope" form="held-form"><option value="selected">the selected</option><option value="all">all ${b.heldCount} held</option></select>
<input name="reason" maxlength="500" placeholder="reason (required to reject)" form="held-form"> <button form="held-form">Apply</button></p>
${b.tripped ? form('breaker-reset', `${reasonField(true)} <button>Reset the breaker</button>`) : ''}`;
  return `<section><h2>Mass-suspension breaker: ${state}</h2>
<p>${b.admitted} of ${b.limit} suspensions admitted within ${b.limits.windowMs / 60_000} min (the larger of ${b.limits.count} and ${b.limits.sharePct}% of ${b.goodStanding} accounts in good standing); ${b.heldCount} held.</p>
${b.heldCount > 0 ? `<table><tr><th></th><th>kind</th><th>account</th><th>overdue (minor)</th><th>key</th><th>decided</th></tr>${held}</table>${more}` : ''}
${actions}</section>`;
}

function page(body: string, notice: string | null): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Safety valves · overdue-worker</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}
.tripped,.mode-off{color:#b00}.mode-shadow{color:#a60}.notice{background:#eef;padding:.5em 1em}.error{background:#fee;padding:.5em 1em}</style></head>
<body><h1>Safety valves</h1><p><a href="${DASHBOARD_PATH}">Queue dashboard</a></p>${notice ?? ''}${body}</body></html>`;
}

const required = noteSchema.min(1, 'must say why');
const optional = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v))
  .pipe(noteSchema.optional());
const keysField = z
  .union([z.string(), z.array(z.string())])
  .optional()
  .transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]));

const forms = {
  mode: z.object({ mode: z.enum(ENFORCEMENT_MODES), reason: required }),
  pause: z.object({ kind: z.string(), reason: required }),
  unpause: z.object({ kind: z.string(), reason: optional }),
  breaker: z.object({
    action: z.enum(['approve', 'reject']),
    scope: z.enum(['selected', 'all']),
    keys: keysField,
    reason: optional,
  }),
  'breaker-reset': z.object({ reason: required }),
} as const;
type FormName = keyof typeof forms;

class FormError extends Error {}

function pauseKindOf(kind: string): PauseKind {
  const problem = pauseKindProblem(kind);
  if (problem !== null) throw new FormError(`kind: ${problem}`);
  return kind as PauseKind;
}

/** Carries out one form; answers what was done, in a sentence. */
async function act(daemon: Daemon, name: FormName, input: unknown, actor: string): Promise<string> {
  const { db, queues } = daemon.ctx;
  const parsed = forms[name].safeParse(input);
  if (!parsed.success) {
    throw new FormError(
      parsed.error.issues.map((i) => `${i.path.join('.') || name}: ${i.message}`).join('; '),
    );
  }
  const f = parsed.data;
  switch (name) {
    case 'mode': {
      const v = f as z.infer<(typeof forms)['mode']>;
      const r = await setEnforcementMode(db, { mode: v.mode, actor, reason: v.reason });
      if (r.kind !== 'changed') return `The mode was already ${r.state.mode}.`;
      if (v.mode === 'enforce') await enqueueFreshScans(queues, actor);
      return `Mode ${r.from} → ${v.mode}${v.mode === 'enforce' ? '; every account is evaluated afresh' : ''}.`;
    }
    case 'pause': {
      const v = f as z.infer<(typeof forms)['pause']>;
      const kind = pauseKindOf(v.kind);
      const done = await setPause(db, { kind, actor, reason: v.reason });
      return done ? `${kind} paused.` : `${kind} were paused already.`;
    }
    case 'unpause': {
      const v = f as z.infer<(typeof forms)['unpause']>;
      const kind = pauseKindOf(v.kind);
      const lifted = await liftPause(db, { kind, actor, reason: v.reason ?? null });
      return lifted ? `${kind} pause lifted.` : `${kind} were not paused.`;
    }
    case 'breaker': {
      const v = f as z.infer<(typeof forms)['breaker']>;
      if (v.scope === 'selected' && v.keys.length === 0) {
        throw new FormError('select at least one held decision, or choose "all"');
      }
      if (v.action === 'reject' && v.reason === undefined) {
        throw new FormError('reason: must say why a decision is rejected');
      }
      const selection = v.scope === 'all' ? { all: true as const } : { keys: v.keys };
      const to = v.action === 'approve' ? 'approved' : 'rejected';
      const settled = await settleHeld(db, to, selection, actor, v.reason ?? null);
      if (to === 'approved') {
        await daemon.evaluateAccounts(
          settled.map((s) => s.accountId),
          actor,
        );
      }
      return `${settled.length} held decisions ${to}.`;
    }
    case 'breaker-reset': {
      const v = f as z.infer<(typeof forms)['breaker-reset']>;
      return (await resetBreaker(db, actor, v.reason))
        ? 'Breaker reset: new suspensions are admitted again, counted from now.'
        : 'The breaker was not tripped.';
    }
  }
}

export async function mountSafetyPage(
  app: FastifyInstance,
  deps: { daemon: Daemon; auth: Authenticator },
): Promise<void> {
  const { daemon, auth } = deps;
  await app.register((scope, _opts, ready) => {
    formScope(scope, auth, 1_000_000);

    const render = async (req: FastifyRequest, notice: string | null) => {
      const canAct = req.principal?.role === 'operator';
      const db = daemon.ctx.db;
      const [state, pauses, breaker] = await Promise.all([
        readControlState(db),
        listPauses(db),
        readBreaker(db, { limit: HELD_SHOWN }),
      ]);
      return page(
        modeSection(state, canAct) +
          pausesSection(pauses, canAct) +
          breakerSection(breaker, canAct),
        notice,
      );
    };

    scope.get(
      SAFETY_PATH,
      async (req: FastifyRequest<{ Querystring: { done?: string } }>, reply) => {
        const done = typeof req.query.done === 'string' ? req.query.done.slice(0, 300) : null;
        const html = await render(req, done === null ? null : `<p class="notice">${e(done)}</p>`);
        return reply.type('text/html; charset=utf-8').send(html);
      },
    );

    for (const name of Object.keys(forms) as FormName[]) {
      scope.post(`${SAFETY_PATH}/${name}`, async (req: FastifyRequest, reply: FastifyReply) => {
        const actor = req.principal === undefined ? 'operator' : actorName(req.principal);
        try {
          const done = await act(daemon, name, req.body ?? {}, actor);
          return reply.redirect(`${SAFETY_PATH}?done=${encodeURIComponent(done)}`, 303);
        } catch (error) {
          if (!(error instanceof FormError)) throw error;
          const html = await render(req, `<p class="error">Refused: ${e(error.message)}</p>`);
          return reply.code(400).type('text/html; charset=utf-8').send(html);
        }
      });
    }
    ready();
  });
}
