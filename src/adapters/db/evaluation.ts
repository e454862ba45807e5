import { sql } from 'drizzle-orm';
import { causedByRowData, dbErrorInfo } from '../../describe-error';
import { decide } from '../../domain/decide';
import { describeDecision } from '../../domain/simulate';
import type { Decision } from '../../domain/decisions';
import { keys } from '../../domain/keys';
import type { RuleSettings } from '../../domain/rules';
import type { Clock } from '../clock/clock';
import { loadAccountSnapshots, type LockMode } from './account-snapshot';
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
    const plans: AccountWrites[] = [];
    /** Invalid rows, and in shadow mode the would-be actions: one statement for both. */
    const events: EventInput[] = [];
    const decided = new Map<string, readonly Decision[]>();
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
      decided.set(accountId, decisions);
      if (mode === 'shadow') {
        events.push(...shadowEvents(accountId, decisions, actor));
        continue;
      }
      plans.push(
        planWrites(result.snapshot, decisions, now, {
          rules,
          actor,
          contacts: result.contacts ?? { email: null, phone: null },
        }),
      );
    }
    await appendEvents(tx, events);
    // Shadow mode writes no state, effect or message: only the events above.
    const summary = mode === 'enforce' ? await applyWrites(tx, plans, now) : null;
    for (const [accountId, decisions] of decided) {
      const invalid = decisions.find((d) => d.kind === 'invalid-snapshot');
      outcomes.set(
        accountId,
        invalid?.kind === 'invalid-snapshot'
          ? { status: 'invalid', reason: invalid.reason }
          : summary === null
            ? { status: 'shadow', decisions }
            : {
                status: 'evaluated',
                decisions,
                newEffects: summary.newEffects.get(accountId) ?? 0,
              },
      );
    }
    return outcomes;
  });
};

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
