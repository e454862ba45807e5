import { loadConfig, POLICY_SETTINGS, type ConfigProblem } from './config';
import type { RuleSettings } from './domain/rules';

/**
 * Proposed policy settings for a what-if: `NAME=value` pairs over the environment the daemon
 * runs with, parsed by the same table as the daemon's own settings (a bad value is refused with
 * the setting named, as at start-up). Only policy settings may be proposed.
 */
export type ProposedRules =
  | { readonly ok: true; readonly rules: RuleSettings; readonly changes: Record<string, string> }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export function proposedRules(
  env: Readonly<Record<string, string | undefined>>,
  sets: readonly string[],
): ProposedRules {
  const problems: ConfigProblem[] = [];
  const changes: Record<string, string> = {};
  for (const set of sets) {
    const eq = set.indexOf('=');
    const name = eq < 0 ? set : set.slice(0, eq);
    if (eq < 0) {
      problems.push({ name, message: 'must be NAME=value' });
    } else if (!POLICY_SETTINGS.includes(name)) {
      problems.push({
        name,
        message: `is not a policy setting (one of ${POLICY_SETTINGS.join(', ')})`,
      });
    } else {
      changes[name] = set.slice(eq + 1);
    }
  }
  if (sets.length === 0) problems.push({ name: 'set', message: 'name at least one setting' });
  if (problems.length > 0) return { ok: false, problems };
  const loaded = loadConfig({ ...env, ...changes });
  if (!loaded.ok) {
    // Only the proposed settings' problems: the environment itself was checked at start.
    const own = loaded.problems.filter((p) => p.name in changes);
    return { ok: false, problems: own.length > 0 ? own : loaded.problems };
  }
  return { ok: true, rules: loaded.config.rules, changes };
}
