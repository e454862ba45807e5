import { loadConfig, RULE_SETTING_NAMES, type Config, type ConfigProblem } from './config';
import type { RuleSettings } from './domain/rules';

/**
 * Proposed policy settings for a what-if: `NAME=value` pairs over the rule settings the daemon
 * runs with, parsed by the same table as the daemon's own (a bad value or combination is
 * refused with the setting named, as at start-up). Only the rule settings may be proposed.
 */
export type ProposedRules =
  | { readonly ok: true; readonly rules: RuleSettings; readonly changes: Record<string, string> }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

const RULE_NAMES: readonly string[] = RULE_SETTING_NAMES;

export function proposedRules(base: Config, sets: readonly string[]): ProposedRules {
  const problems: ConfigProblem[] = [];
  const changes: Record<string, string> = {};
  for (const set of sets) {
    const eq = set.indexOf('=');
    const name = (eq < 0 ? set : set.slice(0, eq)).trim();
    if (eq < 0) {
      problems.push({ name, message: 'must be NAME=value' });
    } else if (!RULE_NAMES.includes(name)) {
      problems.push({
        name,
        message: `is not a policy rule setting (one of ${RULE_SETTING_NAMES.join(', ')})`,
      });
    } else {
      changes[name] = set.slice(eq + 1);
    }
  }
  if (sets.length === 0) problems.push({ name: 'set', message: 'name at least one setting' });
  if (problems.length > 0) return { ok: false, problems };
  const loaded = loadConfig({ ...base.ruleInput, ...changes });
  if (!loaded.ok) return { ok: false, problems: loaded.problems };
  return { ok: true, rules: loaded.config.rules, changes };
}
