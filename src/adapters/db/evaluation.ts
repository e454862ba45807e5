import { sql } from 'drizzle-orm';
import { decide } from '../../domain/decide';
import type { Decision } from '../../domain/decisions';
import { keys } from '../../domain/keys';
import type { RuleSettings } from '../../domain/rules';
import type { Clock } from '../clock/clock';
import { loadAccountSnapshot } from './account-snapshot';
import { applyDecisions } from './apply-decisions';
import type { Db, Tx } from './client';
import { appendEvent } from './daemon-writers';

export type EvaluationOutcome =
  | {
      readonly status: 'evaluated';
      readonly decisions: readonly Decision[];
      readonly newEffects: number;
    }
  | { readonly status: 'not-found' }
  | { readonly status: 'invalid'; readonly reason: string };

/**
 * Marks the transaction as the daemon's, so the NOTIFY triggers (migration 0002) stay quiet about
 * the daemon's own writes and an evaluation never wakes itself.
 */
export async function markDaemonTransaction(tx: Tx): Promise<void> {
  await tx.execute(sql`select set_config('overdue_worker.origin', 'daemon', true)`);
}

/**
 * One evaluation, in one transaction: lock the account, load its snapshot, decide, write state
 * changes, events and outbox rows, commit. Evaluations of one account serialize on the row lock,
 * so two daemons evaluating the same account at once decide one after the other.
 */
export async function evaluateAccount(
  db: Db,
  accountId: string,
  clock: Clock,
  rules: RuleSettings,
  actor: string,
): Promise<EvaluationOutcome> {
  return db.transaction(async (tx) => {
    await markDaemonTransaction(tx);
    const loaded = await loadAccountSnapshot(tx, accountId, clock.now(), {
      revertNoticeWindowMs: rules.revertNoticeWindowMs,
    });
    if (!loaded.ok) {
      if (loaded.code === 'not-found') return { status: 'not-found' } as const;
      // A row the billing system wrote breaks the contract: say why, once per reason, and skip.
      await appendEvent(tx, {
        accountId,
        kind: 'invalid-snapshot',
        detail: { reason: loaded.reason },
        actor,
        idempotencyKey: keys.invalid(accountId, reasonCode(loaded.reason)),
      });
      return { status: 'invalid', reason: loaded.reason } as const;
    }
    // The clock is read after the row lock is held: a wait for the lock does not age `now`.
    const now = clock.now();
    const decisions = decide(loaded.snapshot, now, rules);
    const invalid = decisions.find((d) => d.kind === 'invalid-snapshot');
    const summary = await applyDecisions(tx, loaded.snapshot, decisions, now, {
      rules,
      actor,
      ...(loaded.contacts ? { contacts: loaded.contacts } : {}),
    });
    if (invalid?.kind === 'invalid-snapshot') {
      return { status: 'invalid', reason: invalid.reason } as const;
    }
    return { status: 'evaluated', decisions, newEffects: summary.newEffects } as const;
  });
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
