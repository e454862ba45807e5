import { sql } from 'drizzle-orm';
import { causedByRowData, dbErrorInfo } from '../../describe-error';
import { gateDecisions, gateRequests } from '../../domain/breaker';
import { decide } from '../../domain/decide';
import { describeDecision } from '../../domain/simulate';
import type { Decision } from '../../domain/decisions';
import { keys } from '../../domain/keys';
import type { RuleSettings } from '../../domain/rules';
import type { Clock } from '../clock/clock';
import { loadAccountSnapshots, type LockMode, type SnapshotResult } from './account-snapshot';
import { admitGated } from './breaker-store';
import { applyWrites, planWrites, type AccountWrites } from './apply-decisions';
import { queryRows, type Db, type Tx } from './client';
import { CURRENT_MODE, type EnforcementMode } from './control-store';
import type { EventInput } from './daemon-writers';
import { appendEvents } from './daemon-writers';

export type EvaluationOutcome =
  | {
      readonly status: 'evaluated';
      readonly decisions: readonly Decision[];
      readonly newEffects: number;
      /** Suspensions and releases the breaker holds (held-by-breaker), not carried out. */
      readonly held: number;
    }
  | { readonly status: 'not-found' }
  | { readonly status: 'invalid'; readonly reason: string }
  /**
   * Shadow mode: decided, and what it would do recorded as shadow events; no state change, no
   * effect, no message.
   */
  | { readonly status: 'shadow'; readonly decisions: readonly Decision[] }
  /** Enforcement is off: nothing read, nothing written. */
  | { readonly status: 'off' };

/** An account's outcome in a batch: also the two that ask for another evaluation. */
export type BatchOutcome =
  | EvaluationOutcome
  /** Another transaction held the account's row (`skip` only): evaluate it again later. */
  | { readonly status: 'skipped' }
  /**
   * Writing this account's decisions failed when it was evaluated on its own (after the batch
   * failed): evaluate it again on its own, where the error is retried and reported as usual.
   */
  | { readonly status: 'failed'; readonly error: string };

/** One account to evaluate, and who the event log names for it. */
export interface EvaluationRequest {
  readonly accountId: string;
  /** 'daemon', or the operator who asked. */
  readonly actor: string;
}

/**
 * Marks the transaction as the daemon's, so the NOTIFY triggers (migration 0002) stay quiet about
 * the daemon's own writes and an evaluation never wakes itself; answers the enforcement mode,
 * read in the same statement (an evaluation needs both, and this costs no extra round trip).
 */
export async function markDaemonTransaction(tx: Tx): Promise<EnforcementMode> {
  const [row] = await queryRows<{ mode: EnforcementMode }>(
    tx,
    sql`select set_config('overdue_worker.origin', 'daemon', true), ${CURRENT_MODE} as mode`,
  );
  return row?.mode ?? 'enforce';
}

/**
 * Evaluates a batch of accounts in one transaction: lock them (in id order; with `skip`, those
 * another evaluation holds are left out and answered `skipped`), load every snapshot with five
 * statements, call the pure `decide` per account, and write all state changes, events, messages
 * and outbox rows with a fixed set of statements (apply-decisions.ts). Commit.
 *
 * A row the billing system wrote that breaks the contract makes that account `invalid` (an event
 * says why) and the others go on. A statement that fails for the batch (a constraint the data
 * breaks in a way validation did not foresee) rolls the batch back; each account is then
 * evaluated on its own, so one bad account fails alone.
 */
export async function evaluateBatch(
  db: Db,
  requests: readonly EvaluationRequest[],
  clock: Clock,
  rules: RuleSettings,
  lock: LockMode,
): Promise<Map<string, BatchOutcome>> {
  if (requests.length === 0) return new Map();
  try {
    return await evaluateInOneTransaction(db, requests, clock, rules, lock);
  } catch (error) {
    if (requests.length === 1 || !causedByRowData(error)) throw error;
    const outcomes = new Map<string, BatchOutcome>();
    for (const request of requests) {
      try {
        const one = await evaluateInOneTransaction(db, [request], clock, rules, lock);
        for (const [id, outcome] of one) outcomes.set(id, outcome);
      } catch (single) {
        if (!causedByRowData(single)) throw single;
        outcomes.set(request.accountId, {
          status: 'failed',
          error: `writing its decisions failed (SQLSTATE ${dbErrorInfo(single)?.code ?? 'unknown'})`,
        });
      }
    }
    return outcomes;
  }
}

/** Evaluates one account, waiting for its row lock. */
export async function evaluateAccount(
  db: Db,
  accountId: string,
  clock: Clock,
  rules: RuleSettings,
  actor: string,
): Promise<EvaluationOutcome> {
  const outcome = (await evaluateBatch(db, [{ accountId, actor }], clock, rules, 'wait')).get(
    accountId,
  );
  // One account waiting for its lock is never skipped, and a failure alone is thrown.
  if (outcome === undefined || outcome.status === 'skipped' || outcome.status === 'failed') {
    throw new Error(`evaluation of ${accountId} ended without an outcome`);
  }
  return outcome;
}

/** The batch in one transaction: what `evaluateBatch` tries first, then per account. */
const evaluateInOneTransaction: typeof evaluateBatch = async (db, requests, clock, rules, lock) => {
  const actorOf = new Map<string, string>();
  for (const r of requests) {
    // An operator's request names the operator even when the daemon also asked.
    if (!actorOf.has(r.accountId) || r.actor !== 'daemon') actorOf.set(r.accountId, r.actor);
  }
  return db.transaction(async (tx) => {
    // Read in the evaluation's transaction: a mode change applies from the next evaluation on.
    const mode = await markDaemonTransaction(tx);
    if (mode === 'off') {
      return new Map<string, BatchOutcome>(
        [...actorOf.keys()].map((id) => [id, { status: 'off' }]),
      );
    }
    const loaded = await loadAccountSnapshots(
      tx,
      [...actorOf.keys()].sort(),
      clock.now(),
      { revertNoticeWindowMs: rules.revertNoticeWindowMs },
      lock,
    );
    // The clock is read after the row locks are held: a wait for a lock does not age `now`.
    const now = clock.now();
    const outcomes = new Map<string, BatchOutcome>();
    for (const id of loaded.skipped) outcomes.set(id, { status: 'skipped' });
    /** Invalid rows, and in shadow mode the would-be actions: one statement for both. */
    const events: EventInput[] = [];
    const decided: Decided[] = [];
    for (const [accountId, result] of loaded.results) {
      const actor = actorOf.get(accountId) ?? 'daemon';
      if (!result.ok) {
        if (result.code === 'not-found') {
          outcomes.set(accountId, { status: 'not-found' });
          continue;
        }
        // A row the billing system wrote breaks the contract: say why, once per reason, and skip.
        events.push({
          accountId,
          kind: 'invalid-snapshot',
          detail: { reason: result.reason },
          actor,
          idempotencyKey: keys.invalid(accountId, reasonCode(result.reason)),
        });
        outcomes.set(accountId, { status: 'invalid', reason: result.reason });
        continue;
      }
      const decisions = decide(result.snapshot, now, rules);
      if (mode === 'shadow') {
        events.push(...shadowEvents(accountId, decisions, actor));
        outcomes.set(accountId, invalidOr(decisions, { status: 'shadow', decisions }));
        continue;
      }
      decided.push({ accountId, actor, result, decisions });
    }
    await appendEvents(tx, events);
    // Shadow mode writes no state, effect or message: only the events above.
    if (mode !== 'enforce') return outcomes;

    const gated = await gateByBreaker(tx, decided);
    const plans: AccountWrites[] = gated.map((g) =>
      planWrites(g.result.snapshot, g.decisions, now, {
        rules,
        actor: g.actor,
        contacts: g.result.contacts ?? { email: null, phone: null },
      }),
    );
    for (const [i, g] of gated.entries()) plans[i]?.events.push(...g.heldEvents);
    const summary = await applyWrites(tx, plans, now);
    for (const g of gated) {
      outcomes.set(
        g.accountId,
        invalidOr(g.decisions, {
          status: 'evaluated',
          decisions: g.decisions,
          newEffects: summary.newEffects.get(g.accountId) ?? 0,
          held: g.held,
        }),
      );
    }
    return outcomes;
  });
};

interface Decided {
  readonly accountId: string;
  readonly actor: string;
  readonly result: Extract<SnapshotResult, { ok: true }>;
  readonly decisions: readonly Decision[];
}

/** An account's decisions after the breaker, with the events of those it newly held. */
interface Gated extends Decided {
  readonly held: number;
  readonly heldEvents: EventInput[];
}

/**
 * The mass-suspension breaker (src/domain/breaker.ts), for the accounts whose decisions include a
 * suspension or a studio release (the others cost nothing): their gated decisions are admitted
 * in this transaction, and those held or rejected are taken out with what follows from them. A
 * newly held decision is an event on its account (`held-by-breaker`).
 */
async function gateByBreaker(tx: Tx, decided: readonly Decided[]): Promise<Gated[]> {
  const requests = decided.flatMap((d) => gateRequests(d.accountId, d.decisions));
  if (requests.length === 0) return decided.map((d) => ({ ...d, held: 0, heldEvents: [] }));
  const admission = await admitGated(tx, requests);
  const newlyHeld = new Map(
    admission.rows.filter((r) => r.status === 'held').map((r) => [r.key, r]),
  );
  return decided.map((d) => {
    const instances = new Map(
      d.result.snapshot.studioInstances.map((i) => [i.id, i.serviceId] as const),
    );
    const { decisions, stopped } = gateDecisions(
      d.decisions,
      (key) => admission.verdicts.get(key) ?? 'go',
      instances,
    );
    const heldEvents: EventInput[] = [];
    for (const s of stopped) {
      const row = newlyHeld.get(s.key);
      if (row === undefined) continue;
      heldEvents.push({
        accountId: d.accountId,
        kind: 'held-by-breaker',
        episodeSeq: typeof row.detail.episodeSeq === 'number' ? row.detail.episodeSeq : null,
        detail: { key: s.key, decision: row.detail.decision, tripSeq: admission.tripSeq },
        actor: d.actor,
        idempotencyKey: `breaker-held-${s.key}`,
      });
    }
    return {
      ...d,
      decisions,
      held: stopped.filter((s) => s.verdict === 'held').length,
      heldEvents,
    };
  });
}

/** `outcome`, unless the decisions say the snapshot was invalid. */
function invalidOr(decisions: readonly Decision[], outcome: BatchOutcome): BatchOutcome {
  const invalid = decisions.find((d) => d.kind === 'invalid-snapshot');
  return invalid?.kind === 'invalid-snapshot'
    ? { status: 'invalid', reason: invalid.reason }
    : outcome;
}

/**
 * What an account's decisions would do, as shadow events: one per decision, keyed on the
 * decision's own idempotency key, so evaluating the same state again records nothing new.
 */
function shadowEvents(
  accountId: string,
  decisions: readonly Decision[],
  actor: string,
): EventInput[] {
  return decisions
    .filter((d) => d.kind !== 'invalid-snapshot')
    .map((d) => ({
      accountId,
      kind: 'shadow-decision',
      episodeSeq: 'episodeSeq' in d ? d.episodeSeq : null,
      detail: { decision: d.kind, key: d.key, would: describeDecision(d) },
      actor,
      idempotencyKey: `shadow-${d.key}`,
    }));
}

/** A short stable code for an invalid-row reason (its first words), safe in a key. */
function reasonCode(reason: string): string {
  const code = reason
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 48);
  return code.length > 0 ? code : 'invalid';
}
