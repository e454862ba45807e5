import { and, asc, eq, gt, sql, type SQL, type SQLWrapper } from 'drizzle-orm';
import { z } from 'zod';
import { ID_PATTERN, ID_RE } from '../../domain/ids';
import { isCurrencyCode } from '../../domain/money';
import type { ProtectionQuota } from '../../domain/rules';
import type {
  AccountSnapshot,
  BillSnapshot,
  Channel,
  EnforcementState,
  PlanSnapshot,
  PlanType,
  ServiceKind,
  ServiceSnapshot,
  ServiceStatus,
  StudioInstanceSnapshot,
} from '../../domain/snapshot';
import type { Tx } from './client';
import {
  accounts,
  bills,
  ENFORCEMENT_STATES,
  PLAN_TYPES,
  resourcePlans,
  SERVICE_KINDS,
  SERVICE_STATUSES,
  services,
  studioInstances,
} from './schema';
import { isValidZone } from '../../domain/time';

// The schema's enumerations must be exactly the domain's unions (compile-time check).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const enumsMatchDomain: [
  Same<(typeof SERVICE_KINDS)[number], ServiceKind>,
  Same<(typeof PLAN_TYPES)[number], PlanType>,
  Same<(typeof SERVICE_STATUSES)[number], ServiceStatus>,
  Same<(typeof ENFORCEMENT_STATES)[number], EnforcementState>,
] = [true, true, true, true];
void enumsMatchDomain;

/** Rows of one account as read from the database, before validation. */
export interface AccountRows {
  readonly account: typeof accounts.$inferSelect;
  readonly bills: readonly (typeof bills.$inferSelect)[];
  readonly services: readonly (typeof services.$inferSelect)[];
  readonly studioInstances: readonly (typeof studioInstances.$inferSelect)[];
  readonly plans: readonly (typeof resourcePlans.$inferSelect)[];
}

export type SnapshotResult =
  | {
      readonly ok: true;
      readonly snapshot: AccountSnapshot;
      /** The account's addresses as stored (notices are addressed from them). */
      readonly contacts?: { readonly email: string | null; readonly phone: string | null };
    }
  | {
      readonly ok: false;
      /** not-found: no such account; invalid: a row breaks the contract (details in `reason`). */
      readonly code: 'not-found' | 'invalid';
      readonly reason: string;
    };

export interface SnapshotOptions {
  /** Plans that expired at most this many ms before `now` are still loaded (R1 revert notice). */
  readonly revertNoticeWindowMs: number;
}

// ---------------------------------------------------------------------------------------------
// Row validation. The database's CHECK constraints already reject most bad rows; these schemas
// also cover what SQL cannot check (IANA zones, ISO 4217 codes, the JSON shape of thresholds) and
// keep working if a billing database runs with looser constraints. Messages name the column.

const id = z.string().regex(ID_RE, { error: 'must match ' + ID_PATTERN });
const safeInt = z.number().refine(Number.isSafeInteger, { error: 'must be a safe integer' });
const nonNegative = safeInt.refine((v) => v >= 0, {
  error: (issue) => `must be >= 0, got ${String(issue.input)}`,
});
const code = z.string().min(1).max(64);
const instant = z.date().refine((d) => !Number.isNaN(d.getTime()), { error: 'invalid instant' });

const planThreshold = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('percent'), percent: z.number().min(0).max(100) }),
  z.strictObject({ kind: z.literal('units'), units: nonNegative }),
]);
/** R10 thresholds as stored in jsonb: null, or an array of thresholds. */
const thresholds = z.array(planThreshold).max(32).nullable();

function isLocale(tag: string): boolean {
  try {
    return Intl.getCanonicalLocales(tag).length === 1;
  } catch {
    return false;
  }
}

const accountRow = z
  .object({
    id,
    currency: z.string().refine(isCurrencyCode, {
      error: (issue) => `unknown ISO 4217 currency ${JSON.stringify(issue.input)}`,
    }),
    availableBalanceMinor: safeInt,
    timeZone: z.string().refine((zone) => isValidZone(zone), {
      error: (issue) => `unknown IANA time zone ${JSON.stringify(issue.input)}`,
    }),
    locale: z.string().refine(isLocale, {
      error: (issue) => `invalid BCP 47 locale ${JSON.stringify(issue.input)}`,
    }),
    email: z.string().nullable(),
    phone: z.string().nullable(),
    notifyEmail: z.boolean(),
    notifySms: z.boolean(),
    smsOptedOut: z.boolean(),
    emailBounced: z.boolean(),
    lowBalanceThresholdMinor: nonNegative.nullable(),
    protectionCustom: z.boolean(),
    protectionAmountMinor: nonNegative.nullable(),
    protectionDurationSeconds: safeInt
      .refine((v) => v > 0, { error: (issue) => `must be > 0, got ${String(issue.input)}` })
      .nullable(),
    planAlertThresholds: thresholds,
    enforcementState: z.enum(ENFORCEMENT_STATES),
    episodeSeq: nonNegative,
    episodeStartedAt: instant.nullable(),
    lastEpisodeEndedAt: instant.nullable(),
  })
  .refine((a) => a.episodeStartedAt === null || a.episodeSeq > 0, {
    error: 'an open episode (episode_started_at set) needs episode_seq > 0',
    path: ['episodeSeq'],
  });

const billRow = z
  .object({
    id,
    product: code,
    amountMinor: nonNegative,
    paidMinor: nonNegative,
    dueAt: instant,
  })
  .transform((b): BillSnapshot => b);

const serviceRow = z
  .object({
    id,
    kind: z.enum(SERVICE_KINDS),
    planType: z.enum(PLAN_TYPES),
    status: z.enum(SERVICE_STATUSES),
    overdueHold: z.boolean(),
    operatorHold: z.boolean(),
  })
  .transform((s): ServiceSnapshot => s);

const studioRow = z
  .object({
    id,
    serviceId: id,
    name: z.string().min(1),
    streaming: z.boolean(),
    releaseDueAt: instant.nullable(),
    releasedAt: instant.nullable(),
  })
  .transform((s): StudioInstanceSnapshot => s);

const planRow = z
  .object({
    id,
    kind: code,
    totalUnits: nonNegative,
    usedUnits: nonNegative,
    startsAt: instant,
    expiresAt: instant,
    purchasedAt: instant,
    alertThresholds: thresholds,
  })
  .refine((p) => p.expiresAt > p.startsAt, {
    error: 'expires_at must be after starts_at',
    path: ['expiresAt'],
  })
  .transform((p): PlanSnapshot => ({
    id: p.id,
    kind: p.kind,
    totalUnits: p.totalUnits,
    usedUnits: p.usedUnits,
    startsAt: p.startsAt,
    expiresAt: p.expiresAt,
    purchasedAt: p.purchasedAt,
    thresholds: p.alertThresholds,
  }));

/** camelCase property path → the column name people see in the database. */
function columnPath(path: readonly PropertyKey[]): string {
  return path
    .map((part) =>
      typeof part === 'string'
        ? part.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
        : String(part),
    )
    .join('.');
}

function describe(error: z.ZodError): string {
  return error.issues
    .map((issue) =>
      issue.path.length === 0 ? issue.message : `${columnPath(issue.path)}: ${issue.message}`,
    )
    .join('; ');
}

class InvalidRow extends Error {}

function parse<S extends z.ZodType>(schema: S, row: unknown, what: string): z.output<S> {
  const result = schema.safeParse(row);
  if (!result.success) throw new InvalidRow(`${what}: ${describe(result.error)}`);
  return result.data;
}

function channelsOf(a: {
  email: string | null;
  phone: string | null;
  notifyEmail: boolean;
  notifySms: boolean;
  smsOptedOut: boolean;
  emailBounced: boolean;
}): Channel[] {
  const channels: Channel[] = [];
  if (a.notifyEmail && a.email !== null && a.email.trim() !== '' && !a.emailBounced) {
    channels.push('email');
  }
  if (a.notifySms && a.phone !== null && a.phone.trim() !== '' && !a.smsOptedOut) {
    channels.push('sms');
  }
  return channels;
}

/**
 * Validates the rows of one account and maps them to the domain snapshot. Pure; never throws for
 * bad data: the first bad row makes the whole snapshot `{ ok: false }` with a reason naming the
 * row and column, and nothing is decided for that account.
 */
export function mapAccountSnapshot(rows: AccountRows): SnapshotResult {
  const accountId = rows.account.id;
  try {
    const a = parse(accountRow, rows.account, `account ${accountId}`);
    const protection: ProtectionQuota | null = a.protectionCustom
      ? {
          amountMinor: a.protectionAmountMinor,
          durationMs:
            a.protectionDurationSeconds === null ? null : a.protectionDurationSeconds * 1000,
        }
      : null;
    const snapshot: AccountSnapshot = {
      accountId: a.id,
      currency: a.currency,
      timeZone: a.timeZone,
      locale: a.locale,
      availableBalanceMinor: a.availableBalanceMinor,
      lowBalanceThresholdMinor: a.lowBalanceThresholdMinor,
      protection,
      channels: channelsOf(a),
      enforcementState: a.enforcementState,
      episode:
        a.episodeStartedAt === null ? null : { seq: a.episodeSeq, startedAt: a.episodeStartedAt },
      lastEpisodeSeq: a.episodeSeq,
      lastEpisodeEndedAt: a.lastEpisodeEndedAt,
      planThresholds: a.planAlertThresholds,
      bills: rows.bills.map((b) => parse(billRow, b, `bill ${b.id}`)),
      services: rows.services.map((s) => parse(serviceRow, s, `service ${s.id}`)),
      studioInstances: rows.studioInstances.map((s) =>
        parse(studioRow, s, `studio instance ${s.id}`),
      ),
      plans: rows.plans.map((p) => parse(planRow, p, `resource plan ${p.id}`)),
    };
    return { ok: true, snapshot };
  } catch (error) {
    if (error instanceof InvalidRow) return { ok: false, code: 'invalid', reason: error.message };
    throw error;
  }
}

/**
 * How a batch load takes its row locks: wait for each, or skip those another holds; `read` takes
 * none (a read-only look, as the what-if does: it decides nothing for real).
 */
export type LockMode = 'wait' | 'skip' | 'read';

export interface LoadedSnapshots {
  /** Per requested id that was locked or found missing: its snapshot, or why there is none. */
  readonly results: Map<string, SnapshotResult>;
  /** Ids another transaction held (`skip` only): not loaded, to evaluate again later. */
  readonly skipped: readonly string[];
}

/** `column in (ids)` with the ids as one jsonb parameter: the SQL text is the same for any count. */
function inIds(column: SQL | SQLWrapper, ids: string): SQL {
  return sql`${column} in (select jsonb_array_elements_text(${ids}::jsonb))`;
}

/**
 * Loads everything `decide` needs about a set of accounts, with five statements whatever their
 * number (pipelined by postgres.js on one connection). Must run inside the transaction that
 * applies the decisions: the account rows are locked `FOR UPDATE` in id order (the order every
 * evaluation takes them in, so two batches never deadlock), which serialises evaluations of the
 * same account across workers and daemons. With `skip`, accounts another transaction holds are
 * left out and reported in `skipped` (`FOR UPDATE SKIP LOCKED`).
 *
 * Per account: unpaid bills with a remainder (any due date), all services and studio instances
 * (the domain needs released ones to know a release is final), plans not expired before
 * `now - revertNoticeWindowMs`. Rows come in a stable order (due date / expiry, then id).
 */
export async function loadAccountSnapshots(
  tx: Tx,
  accountIds: readonly string[],
  now: Date,
  options: SnapshotOptions,
  lock: LockMode,
): Promise<LoadedSnapshots> {
  const results = new Map<string, SnapshotResult>();
  const valid: string[] = [];
  for (const accountId of new Set(accountIds)) {
    if (ID_RE.test(accountId)) valid.push(accountId);
    else {
      results.set(accountId, {
        ok: false,
        code: 'invalid',
        reason: `account id ${JSON.stringify(accountId)} must match ${ID_PATTERN}`,
      });
    }
  }
  if (valid.length === 0) return { results, skipped: [] };
  const ids = JSON.stringify(valid);
  const query = tx.select().from(accounts).where(inIds(accounts.id, ids)).orderBy(asc(accounts.id));
  const accountRows = await (lock === 'read'
    ? query
    : query.for('update', lock === 'skip' ? { skipLocked: true } : {}));
  const locked = new Set(accountRows.map((a) => a.id));
  let skipped: string[] = [];
  const absent = valid.filter((accountId) => !locked.has(accountId));
  if (absent.length > 0) {
    const present =
      lock === 'skip'
        ? new Set(
            (
              await tx
                .select({ id: accounts.id })
                .from(accounts)
                .where(inIds(accounts.id, JSON.stringify(absent)))
            ).map((a) => a.id),
          )
        : new Set<string>();
    skipped = absent.filter((accountId) => present.has(accountId));
    for (const accountId of absent) {
      if (present.has(accountId)) continue;
      results.set(accountId, {
        ok: false,
        code: 'not-found',
        reason: `account ${accountId} not found`,
      });
    }
  }
  if (accountRows.length === 0) return { results, skipped };
  const lockedIds = JSON.stringify([...locked]);
  const oldestExpiry = new Date(now.getTime() - options.revertNoticeWindowMs);
  // Issued together: on one connection postgres.js pipelines them (one round trip, not four).
  const [billRows, serviceRows, studioRows, planRows] = await Promise.all([
    tx
      .select()
      .from(bills)
      .where(
        and(
          inIds(bills.accountId, lockedIds),
          eq(bills.status, 'unpaid'),
          gt(bills.amountMinor, bills.paidMinor),
        ),
      )
      .orderBy(asc(bills.dueAt), asc(bills.id)),
    tx
      .select()
      .from(services)
      .where(inIds(services.accountId, lockedIds))
      .orderBy(asc(services.id)),
    tx
      .select()
      .from(studioInstances)
      .where(inIds(studioInstances.accountId, lockedIds))
      .orderBy(asc(studioInstances.id)),
    tx
      .select()
      .from(resourcePlans)
      .where(
        and(inIds(resourcePlans.accountId, lockedIds), gt(resourcePlans.expiresAt, oldestExpiry)),
      )
      .orderBy(asc(resourcePlans.expiresAt), asc(resourcePlans.id)),
  ]);
  const billsOf = groupBy(billRows);
  const servicesOf = groupBy(serviceRows);
  const studiosOf = groupBy(studioRows);
  const plansOf = groupBy(planRows);
  for (const account of accountRows) {
    const mapped = mapAccountSnapshot({
      account,
      bills: billsOf.get(account.id) ?? [],
      services: servicesOf.get(account.id) ?? [],
      studioInstances: studiosOf.get(account.id) ?? [],
      plans: plansOf.get(account.id) ?? [],
    });
    results.set(
      account.id,
      mapped.ok ? { ...mapped, contacts: { email: account.email, phone: account.phone } } : mapped,
    );
  }
  return { results, skipped };
}

/** Rows by account id, each group in the order the rows came. */
function groupBy<R extends { accountId: string }>(rows: readonly R[]): Map<string, R[]> {
  const groups = new Map<string, R[]>();
  for (const row of rows) {
    const group = groups.get(row.accountId);
    if (group) group.push(row);
    else groups.set(row.accountId, [row]);
  }
  return groups;
}

/** One account's snapshot, its row locked (waiting for the lock): see loadAccountSnapshots. */
export async function loadAccountSnapshot(
  tx: Tx,
  accountId: string,
  now: Date,
  options: SnapshotOptions,
): Promise<SnapshotResult> {
  const { results } = await loadAccountSnapshots(tx, [accountId], now, options, 'wait');
  return (
    results.get(accountId) ?? {
      ok: false,
      code: 'not-found',
      reason: `account ${accountId} not found`,
    }
  );
}
