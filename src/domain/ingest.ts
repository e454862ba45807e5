/**
 * The version rules of the billing system's boundary. Every ingested record carries the source's
 * `version` (grows with each change of that record) and is compared, by the hash of its body
 * without the version, with what is stored under the same id:
 *
 * | stored                          | incoming                         | outcome     |
 * |---------------------------------|----------------------------------|-------------|
 * | nothing                         | any                              | `create`    |
 * | another account                 | any                              | `conflict`  |
 * | version v                       | version > v                      | `update`    |
 * | version v, same hash            | version ≤ v                      | `duplicate` |
 * | version v, other hash           | version ≤ v                      | `conflict`  |
 * | version v, no hash (table write)| version = v                      | `update`    |
 *
 * A row written straight into a table carries no hash: the first ingest at its version adopts it.
 * Nothing older ever overwrites something newer, whatever order the requests arrive in.
 */

export interface StoredVersion {
  readonly accountId: string;
  readonly version: number;
  /** Null: written straight into the table, not through ingest. */
  readonly hash: string | null;
}

export interface IncomingVersion {
  readonly accountId: string;
  readonly version: number;
  readonly hash: string;
}

export type VersionOutcome =
  | { readonly kind: 'create' }
  | { readonly kind: 'update' }
  | { readonly kind: 'duplicate' }
  | {
      readonly kind: 'conflict';
      readonly reason: 'other-account' | 'stale-version';
      readonly storedVersion: number;
    };

export function classifyVersion(
  stored: StoredVersion | null,
  incoming: IncomingVersion,
): VersionOutcome {
  if (stored === null) return { kind: 'create' };
  if (stored.accountId !== incoming.accountId) {
    return { kind: 'conflict', reason: 'other-account', storedVersion: stored.version };
  }
  if (incoming.version > stored.version) return { kind: 'update' };
  if (stored.hash === incoming.hash) return { kind: 'duplicate' };
  if (stored.hash === null && incoming.version === stored.version) return { kind: 'update' };
  return { kind: 'conflict', reason: 'stale-version', storedVersion: stored.version };
}

/** A JSON value with object keys in code-point order: the text a body hash is taken of. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
