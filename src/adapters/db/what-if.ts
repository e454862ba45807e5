import { sql } from 'drizzle-orm';
import { decide, overdueMinor } from '../../domain/decide';
import type { Decision } from '../../domain/decisions';
import type { RuleSettings } from '../../domain/rules';
import { loadAccountSnapshots, type LoadedSnapshots } from './account-snapshot';
import { queryRows, type Db } from './client';

/**
 * The fleet what-if: every account decided with the current and with proposed rule settings,
 * side by side, in read-only transactions that take no lock. Nothing is written: not an event,
 * not `evaluated_at`. Answers, per decision kind, how many accounts would get it more often
 * or less often under the proposed settings, with a sample of those accounts and what they owe.
 */

/** Accounts per read-only transaction, as the CLI and the API use it. */
export const WHAT_IF_PAGE = 1_000;

export interface WhatIfOptions {
  /** The instant both rule sets are evaluated at. */
  readonly at: Date;
  /** Accounts per read-only transaction. */
  readonly pageSize: number;
  /** Accounts named per decision kind and direction. */
  readonly sample: number;
  /** Called after each page with the accounts read so far. */
  readonly onProgress?: (done: number) => void;
}

export interface WhatIfSample {
  readonly accountId: string;
  readonly currency: string;
  /** Overdue amount at `at`, minor units. */
  readonly overdueMinor: number;
  readonly availableBalanceMinor: number;
}

export interface WhatIfKind {
  readonly decision: string;
  /** Accounts that would get this decision under the proposed settings and not now. */
  readonly more: number;
  /** Accounts that get it now and would not under the proposed settings. */
  readonly fewer: number;
  readonly sampleMore: readonly WhatIfSample[];
  readonly sampleFewer: readonly WhatIfSample[];
}

export interface WhatIfReport {
  readonly at: Date;
  readonly accounts: number;
  /** Accounts whose decisions differ. */
  readonly changed: number;
  /** Accounts whose rows break the contract (decided under neither). */
  readonly invalid: number;
  readonly kinds: readonly WhatIfKind[];
}

/** Decision kinds of a list, counted. */
function kindCounts(decisions: readonly Decision[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of decisions) counts.set(d.kind, (counts.get(d.kind) ?? 0) + 1);
  return counts;
}

export async function whatIf(
  db: Db,
  current: RuleSettings,
  proposed: RuleSettings,
  options: WhatIfOptions,
): Promise<WhatIfReport> {
  const { at } = options;
  const byKind = new Map<
    string,
    { more: number; fewer: number; sampleMore: WhatIfSample[]; sampleFewer: WhatIfSample[] }
  >();
  const entry = (kind: string) => {
    let e = byKind.get(kind);
    if (e === undefined) {
      e = { more: 0, fewer: 0, sampleMore: [], sampleFewer: [] };
      byKind.set(kind, e);
    }
    return e;
  };
  let accounts = 0;
  let changed = 0;
  let invalid = 0;
  const revertNoticeWindowMs = Math.max(
    current.revertNoticeWindowMs,
    proposed.revertNoticeWindowMs,
  );
  await forEachSnapshotPage(db, at, options.pageSize, revertNoticeWindowMs, (ids, loaded) => {
    for (const [, result] of loaded.results) {
      if (!result.ok) {
        if (result.code !== 'not-found') invalid += 1;
        continue;
      }
      const snapshot = result.snapshot;
      const now = kindCounts(decide(snapshot, at, current));
      const then = kindCounts(decide(snapshot, at, proposed));
      if (now.has('invalid-snapshot') || then.has('invalid-snapshot')) {
        invalid += 1;
        continue;
      }
      let differs = false;
      for (const kind of new Set([...now.keys(), ...then.keys()])) {
        const delta = (then.get(kind) ?? 0) - (now.get(kind) ?? 0);
        if (delta === 0) continue;
        differs = true;
        const e = entry(kind);
        const sample: WhatIfSample = {
          accountId: snapshot.accountId,
          currency: snapshot.currency,
          overdueMinor: overdueMinor(snapshot.bills, at),
          availableBalanceMinor: snapshot.availableBalanceMinor,
        };
        if (delta > 0) {
          e.more += 1;
          if (e.sampleMore.length < options.sample) e.sampleMore.push(sample);
        } else {
          e.fewer += 1;
          if (e.sampleFewer.length < options.sample) e.sampleFewer.push(sample);
        }
      }
      if (differs) changed += 1;
    }
    accounts += ids.length;
    options.onProgress?.(accounts);
  });
  return {
    at,
    accounts,
    changed,
    invalid,
    kinds: [...byKind.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([decision, e]) => ({ decision, ...e })),
  };
}

/**
 * Walks every account in id order, `pageSize` at a time: each page's snapshots are loaded at `at`
 * in a read-only transaction that takes no lock, and handed to `onPage`. Returns how many
 * accounts it read.
 */
export async function forEachSnapshotPage(
  db: Db,
  at: Date,
  pageSize: number,
  revertNoticeWindowMs: number,
  onPage: (ids: readonly string[], loaded: LoadedSnapshots) => void,
): Promise<number> {
  let cursor = '';
  let read = 0;
  for (;;) {
    const page = await db.transaction(
      async (tx) => {
        const ids = (
          await queryRows<{ id: string }>(
            tx,
            sql`select id from accounts where id > ${cursor} order by id limit ${pageSize}`,
          )
        ).map((r) => r.id);
        if (ids.length === 0) return null;
        const loaded = await loadAccountSnapshots(tx, ids, at, { revertNoticeWindowMs }, 'read');
        return { ids, loaded };
      },
      { accessMode: 'read only' },
    );
    if (page === null) break;
    onPage(page.ids, page.loaded);
    read += page.ids.length;
    cursor = page.ids[page.ids.length - 1] ?? cursor;
    if (page.ids.length < pageSize) break;
  }
  return read;
}

/** How many accounts there are (for a progress bar's total). */
export async function countAccounts(db: Db): Promise<number> {
  const [row] = await queryRows<{ n: string | number }>(
    db,
    sql`select count(*) as n from accounts`,
  );
  return Number(row?.n ?? 0);
}
