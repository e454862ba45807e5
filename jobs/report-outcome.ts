import type { EvaluationOutcome } from '../src/adapters/db/evaluation';
import type { Logger } from '../src/logger';
import { metrics } from '../src/observability/metrics';

/** One account's evaluation as a job's result shows it. */
export type ReportedOutcome =
  | {
      readonly status: 'evaluated';
      readonly decisions: string[];
      readonly newEffects: number;
      readonly held: number;
    }
  | { readonly status: 'not-found' }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'shadow'; readonly decisions: string[] }
  | { readonly status: 'off' };

export interface ReportOptions {
  /** Added to each log line (a page's evaluation names the account; a single one's log has it). */
  readonly fields?: Readonly<Record<string, unknown>>;
  /** Warn when the account does not exist (asked for by name), rather than count it silently. */
  readonly warnNotFound: boolean;
}

/**
 * Records one account's evaluation, the same for a single account (jobs/evaluate-account.ts) and
 * a scan's page (jobs/evaluate-batch.ts): the metric by outcome, and a log line for decisions
 * taken or for rows that break the contract.
 */
export function reportOutcome(
  outcome: EvaluationOutcome,
  log: Logger,
  { fields = {}, warnNotFound }: ReportOptions,
): ReportedOutcome {
  switch (outcome.status) {
    case 'not-found':
      metrics.evaluated('not-found');
      if (warnNotFound) log.warn(fields, 'account not found; nothing to evaluate');
      return { status: 'not-found' };
    case 'invalid':
      metrics.evaluated('invalid');
      log.warn(
        { ...fields, reason: outcome.reason },
        'account skipped: its rows break the contract',
      );
      return { status: 'invalid', reason: outcome.reason };
    case 'evaluated': {
      const kinds = outcome.decisions.map((d) => d.kind);
      metrics.evaluated('evaluated', kinds);
      if (kinds.length > 0) {
        log.info(
          { ...fields, decisions: kinds, newEffects: outcome.newEffects },
          'account evaluated',
        );
      }
      if (outcome.held > 0) {
        log.warn(
          { ...fields, held: outcome.held },
          'suspension or studio release held by the mass-suspension breaker',
        );
      }
      return {
        status: 'evaluated',
        decisions: kinds,
        newEffects: outcome.newEffects,
        held: outcome.held,
      };
    }
    case 'shadow': {
      const kinds = outcome.decisions.map((d) => d.kind);
      metrics.evaluated('shadow');
      if (kinds.length > 0) log.info({ ...fields, decisions: kinds }, 'evaluated in shadow mode');
      return { status: 'shadow', decisions: kinds };
    }
    case 'off':
      metrics.evaluated('off');
      return { status: 'off' };
  }
}
