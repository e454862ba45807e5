import { createHash } from 'node:crypto';
import { sql, type SQL } from 'drizzle-orm';
import { canonicalJson, classifyVersion, type StoredVersion } from '../../domain/ingest';
import {
  allocatePayment,
  reversePayment,
  reviseBill,
  type Allocation,
  type LedgerBill,
  type PaymentEffect,
} from '../../domain/payments';
import { queryRows, type Db, type Tx } from './client';

/**
 * The billing system's boundary, set-based. One batch is one transaction:
 *
 * 1. `set_config`: a statement timeout (and, when money moves back, the paid-adjustment flag the
 *    `bills_paid_guard` trigger asks for);
 * 2. lock the batch's accounts in sorted id order (`FOR UPDATE`): two batches over the same
 *    accounts, in any order, queue behind each other instead of deadlocking;
 * 3. load the stored rows of the batch's ids (`FOR UPDATE`);
 * 4. classify every item by the version rules (src/domain/ingest.ts), in request order;
 * 5. write what is new or newer with one fixed-shape statement per table (`jsonb_to_recordset`:
 *    the SQL text does not change with the number of rows), then the balance changes and the
 *    audit events with one statement each.
 *
 * A batch with any conflict (409) or any invalid item (422) writes nothing and names every such
 * item. Money is allocated by src/domain/payments.ts.
 */

/** An item the batch refuses; the batch then stores nothing. */
export interface IngestIssue {
  readonly index: number;
  readonly id: string;
  readonly field: string;
  readonly message: string;
  readonly storedVersion?: number;
}

/** The batch was refused: 409 (version or ownership conflict) or 422 (unknown or invalid reference). */
export class IngestRejected extends Error {
  constructor(
    readonly status: 409 | 422,
    readonly code: string,
    readonly issues: readonly IngestIssue[],
  ) {
    super(
      issues
        .slice(0, 5)
        .map((i) => `${i.id}: ${i.message}`)
        .join('; '),
    );
  }
}

export type ItemResult = 'created' | 'updated' | 'duplicate';

export interface IngestItemResult {
  readonly id: string;
  readonly result: ItemResult;
  readonly [extra: string]: unknown;
}

export interface BatchResult {
  readonly results: readonly IngestItemResult[];
  /**
   * Accounts to evaluate now: their money, bills due by now, services or quotas changed. (A bill
   * due later changes nothing until it falls due; the scan finds it then.)
   */
  readonly changedAccounts: readonly string[];
}

export interface IngestOptions {
  /** The transaction's statement_timeout, ms. */
  readonly statementTimeoutMs: number;
  /** The clock's now: a bill due by then makes its account worth evaluating at once. */
  readonly now: Date;
  /** Who posted the batch, for the audit events. */
  readonly actor: string;
}

/** Hash of a body without its version: what "the same record" means for duplicates. */
export function bodyHash(body: Record<string, unknown>): string {
  const rest = Object.fromEntries(Object.entries(body).filter(([key]) => key !== 'version'));
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Items as the store takes them: validated bodies with their version and hash.

export interface Versioned {
  readonly id: string;
  readonly accountId: string;
  readonly version: number;
  readonly hash: string;
}

export interface BillItem extends Versioned {
  readonly product: string;
  readonly amountMinor: number;
  readonly issuedAt: Date;
  readonly dueAt: Date;
  readonly void: boolean;
}

export interface PaymentItem extends Versioned {
  readonly amountMinor: number;
  readonly billId: string | null;
}

export interface TopupItem extends Versioned {
  readonly amountMinor: number;
}

export interface ReversalItem extends Versioned {
  readonly paymentId: string;
  readonly reason: string | null;
}

/** Items written as a plain upsert of their row (accounts, services, instances, licenses, orders,
 * plans, usage): `row` holds the table's columns by SQL name. */
export interface RowItem extends Versioned {
  readonly row: Readonly<Record<string, unknown>>;
}

// ---------------------------------------------------------------------------------------------
// Shared steps.

/**
 * Sets the batch's statement timeout and paid-adjustment flag. The write is marked as the
 * daemon's own (`overdue_worker.origin`), so the triggers do not NOTIFY: the caller queues the
 * evaluations that matter itself (BatchResult.changedAccounts), not one per touched account.
 */
async function begin(tx: Tx, options: IngestOptions, paidAdjustment: string): Promise<void> {
  await tx.execute(
    sql`select set_config('statement_timeout', ${String(options.statementTimeoutMs)}, true),
               set_config('overdue_worker.paid_adjustment', ${paidAdjustment}, true),
               set_config('overdue_worker.origin', 'daemon', true)`,
  );
}

/** Locks the accounts in id order; returns the ids that exist. */
async function lockAccounts(tx: Tx, accountIds: Iterable<string>): Promise<Set<string>> {
  const ids = [...new Set(accountIds)].sort();
  const rows = await queryRows<{ id: string }>(
    tx,
    sql`select id from accounts where id in (select ${textArray(ids)}) order by id for update`,
  );
  return new Set(rows.map((r) => r.id));
}

/** A set of strings as SQL rows, with a statement text that does not depend on their number. */
function textArray(values: readonly string[]): SQL {
  return sql`jsonb_array_elements_text(${JSON.stringify(values)}::jsonb)`;
}

function requireAccounts(items: readonly Versioned[], existing: Set<string>): void {
  const issues = items.flatMap((item, index) =>
    existing.has(item.accountId)
      ? []
      : [{ index, id: item.id, field: 'accountId', message: 'unknown account' }],
  );
  if (issues.length > 0) throw new IngestRejected(422, 'unknown-account', issues);
}

export type StoredRow = Record<string, unknown> & {
  id: string;
  account_id: string;
  source_version: string | number;
  source_hash: string | null;
};

/**
 * How a kind's rows are found by the caller's id. Most tables are keyed by `id`; usage records
 * by the writer's `source_id` within the account (item id `<account>/<source>`).
 */
interface RowKey {
  /** SQL giving the caller's id of a stored row. */
  readonly select: string;
  /** The column naming the row's account (`id` for accounts themselves). */
  readonly account?: string;
  /** SQL matching the rows of a set of ids given as `ids(k)`. */
  readonly match: string;
  /** The unique constraint's columns, for ON CONFLICT. */
  readonly conflict: string;
}

const ID_KEY: RowKey = { select: 'id', match: 'id in (select k from ids)', conflict: 'id' };

/** Accounts: keyed by id, and each is its own account. */
export const ACCOUNT_KEY: RowKey = { ...ID_KEY, account: 'id' };

/** The stored rows of `ids` in `table`, locked. */
async function loadStored(
  tx: Tx,
  table: string,
  columns: string,
  ids: readonly string[],
  key: RowKey = ID_KEY,
): Promise<Map<string, StoredRow>> {
  const rows = await queryRows<StoredRow>(
    tx,
    sql`with ids(k) as (select ${textArray(ids)})
        select ${sql.raw(key.select)} as id, ${sql.raw(key.account ?? 'account_id')} as account_id,
               source_version, source_hash, ${sql.raw(columns)}
          from ${sql.identifier(table)}
         where ${sql.raw(key.match)}
         order by 1 for update`,
  );
  return new Map(rows.map((r) => [r.id, r]));
}

function storedVersion(row: StoredRow | undefined): StoredVersion | null {
  if (row === undefined) return null;
  return {
    accountId: row.account_id,
    version: Number(row.source_version),
    hash: row.source_hash,
  };
}

interface Classified<T extends Versioned> {
  readonly results: IngestItemResult[];
  /** The last new-or-newer item of each id, in first-seen order. */
  readonly writes: Map<string, { item: T; created: boolean }>;
}

/**
 * Step 4: the version rules, in request order (an id sent twice in a batch is compared with its
 * earlier copy). Throws 409 naming every conflicting item.
 */
function classify<T extends Versioned>(
  items: readonly T[],
  stored: Map<string, StoredRow>,
  kind: string,
): Classified<T> {
  const current = new Map<string, StoredVersion | null>();
  const writes = new Map<string, { item: T; created: boolean }>();
  const results: IngestItemResult[] = [];
  const issues: IngestIssue[] = [];
  for (const [index, item] of items.entries()) {
    const before = current.has(item.id)
      ? (current.get(item.id) ?? null)
      : storedVersion(stored.get(item.id));
    const outcome = classifyVersion(before, item);
    if (outcome.kind === 'conflict') {
      issues.push({
        index,
        id: item.id,
        field: outcome.reason === 'other-account' ? 'accountId' : 'version',
        storedVersion: outcome.storedVersion,
        message:
          outcome.reason === 'other-account'
            ? `${kind} ${item.id} belongs to another account`
            : `${kind} ${item.id} is stored at version ${outcome.storedVersion} with another body; send a newer version`,
      });
      continue;
    }
    if (outcome.kind === 'duplicate') {
      results.push({ id: item.id, result: 'duplicate' });
      continue;
    }
    const created = outcome.kind === 'create' && !writes.has(item.id);
    const wasCreated = writes.get(item.id)?.created ?? false;
    writes.set(item.id, { item, created: created || wasCreated });
    current.set(item.id, { accountId: item.accountId, version: item.version, hash: item.hash });
    results.push({ id: item.id, result: outcome.kind === 'create' ? 'created' : 'updated' });
  }
  if (issues.length > 0) throw new IngestRejected(409, 'version-conflict', issues);
  return { results, writes };
}

/** What a batch writes: its table, the stored columns it compares, and how to name an item. */
export interface BatchSpec {
  readonly paidAdjustment: '' | 'reversal' | 'bill-revision';
  readonly table: string;
  readonly columns: string;
  readonly noun: string;
  readonly key?: RowKey;
  readonly createsAccount?: boolean;
}

export type OpenedBatch<T extends Versioned> = Classified<T> & { stored: Map<string, StoredRow> };

/**
 * Steps 1 to 4 of every batch: its settings, its accounts locked in id order (all must exist,
 * unless the batch creates them), its stored rows locked, and the version rules applied.
 */
export async function openBatch<T extends Versioned>(
  tx: Tx,
  options: IngestOptions,
  items: readonly T[],
  o: BatchSpec,
): Promise<OpenedBatch<T>> {
  await begin(tx, options, o.paidAdjustment);
  const existing = await lockAccounts(
    tx,
    items.map((i) => i.accountId),
  );
  if (o.createsAccount !== true) requireAccounts(items, existing);
  const stored = await loadStored(
    tx,
    o.table,
    o.columns,
    items.map((i) => i.id),
    o.key,
  );
  return { stored, ...classify(items, stored, o.noun) };
}

/**
 * One ingest batch in one transaction: opens it (locks, stored rows, each item classified) and
 * runs `write` when some item is new or newer; a batch of duplicates writes nothing.
 */
function ingestBatch<T extends Versioned>(
  db: Db,
  items: readonly T[],
  options: IngestOptions,
  spec: BatchSpec,
  write: (tx: Tx, batch: OpenedBatch<T>) => Promise<BatchResult>,
): Promise<BatchResult> {
  return db.transaction(async (tx) => {
    const batch = await openBatch(tx, options, items, spec);
    if (batch.writes.size === 0) return { results: batch.results, changedAccounts: [] };
    return write(tx, batch);
  });
}

/** The guard every upsert repeats in SQL: only a newer version (or a table-written row at the same
 * version) of the same account is overwritten. A row it skips was changed by a concurrent batch. */
function newerGuard(table: string, accountColumn = 'account_id'): SQL {
  const t = sql.identifier(table);
  const account = sql.raw(accountColumn);
  return sql`where ${t}.${account} = excluded.${account}
               and (${t}.source_version < excluded.source_version
                    or (${t}.source_version = excluded.source_version and ${t}.source_hash is null))`;
}

/** The first columns of a record the billing system writes: its id and its account. */
export const OWNED_COLUMNS = [
  ['id', 'text'],
  ['account_id', 'text'],
] as const satisfies RowKind['columns'];

/** How a batch's rows are upserted: `RowKind`'s table, columns and update rules. */
type UpsertSpec = Pick<
  RowKind,
  'table' | 'columns' | 'insertOnly' | 'onUpdate' | 'key' | 'noUpdatedAt'
>;

/**
 * Upserts `rows` (one jsonb parameter, read by `jsonb_to_recordset`) with their source version
 * and hash; an update sets every column but the key, account and insert-only ones, and only
 * where `newerGuard` allows. Returns the ids written.
 */
function upsertRows(
  tx: Tx,
  spec: UpsertSpec,
  rows: readonly Record<string, unknown>[],
): Promise<{ id: string }[]> {
  const key = spec.key ?? ID_KEY;
  const columns = [...spec.columns, ['source_version', 'bigint'], ['source_hash', 'text']];
  const all = columns.map(([n]) => n);
  const types = columns.map(([n, t]) => `${n} ${t}`).join(', ');
  const fixed = new Set(['id', 'account_id', 'source_id', ...(spec.insertOnly ?? [])]);
  const assignments = all
    .filter((n) => !fixed.has(n))
    .map((n) => `${n} = excluded.${n}`)
    .concat(spec.onUpdate === undefined ? [] : [spec.onUpdate])
    .concat(spec.noUpdatedAt === true ? [] : ['updated_at = now()'])
    .join(', ');
  return queryRows<{ id: string }>(
    tx,
    sql`insert into ${sql.identifier(spec.table)} (${sql.raw(all.join(', '))})
        select ${sql.raw(all.map((n) => `x.${n}`).join(', '))}
          from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(${sql.raw(types)})
        on conflict (${sql.raw(key.conflict)}) do update set ${sql.raw(assignments)}
        ${newerGuard(spec.table, key.account)}
        returning ${sql.raw(key.select)} as id`,
  );
}

function checkWritten(
  kind: string,
  items: readonly Versioned[],
  expected: ReadonlyMap<string, unknown>,
  written: readonly { id: string }[],
) {
  if (written.length === expected.size) return;
  const got = new Set(written.map((r) => r.id));
  const issues = [...expected.keys()]
    .filter((id) => !got.has(id))
    .map((id) => ({
      index: items.findIndex((item) => item.id === id),
      id,
      field: 'version',
      message: `${kind} ${id} was changed by a concurrent request; send it again`,
    }));
  throw new IngestRejected(409, 'version-conflict', issues);
}

interface BalanceChange {
  readonly accountId: string;
  readonly deltaMinor: number;
}

/** Adds each delta to its account's available balance (one statement). */
async function applyBalanceChanges(tx: Tx, changes: readonly BalanceChange[]): Promise<void> {
  const byAccount = new Map<string, number>();
  for (const c of changes) {
    if (c.deltaMinor !== 0) {
      byAccount.set(c.accountId, (byAccount.get(c.accountId) ?? 0) + c.deltaMinor);
    }
  }
  if (byAccount.size === 0) return;
  const rows = [...byAccount].map(([id, delta]) => ({ id, delta }));
  await tx.execute(sql`
    update accounts a
       set available_balance_minor = a.available_balance_minor + x.delta,
           version = a.version + 1, updated_at = now()
      from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(id text, delta bigint)
     where a.id = x.id`);
}

interface EventRow {
  readonly accountId: string;
  readonly kind: string;
  readonly detail: Record<string, unknown>;
  readonly idempotencyKey: string;
}

/** Appends audit events (one statement; an idempotency key already used is skipped). */
async function appendEventRows(tx: Tx, actor: string, events: readonly EventRow[]): Promise<void> {
  if (events.length === 0) return;
  const rows = events.map((e) => ({
    account_id: e.accountId,
    kind: e.kind,
    detail: e.detail,
    key: e.idempotencyKey,
  }));
  await tx.execute(sql`
    insert into enforcement_events (account_id, kind, detail, actor, idempotency_key)
    select x.account_id, x.kind, x.detail, ${actor}, x.key
      from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
           as x(account_id text, kind text, detail jsonb, key text)
    on conflict (idempotency_key) do nothing`);
}

function changedAccounts<T extends Versioned>(writes: Map<string, { item: T }>): string[] {
  return [...new Set([...writes.values()].map((w) => w.item.accountId))];
}

// ---------------------------------------------------------------------------------------------
// Bills.

function ledgerBill(row: Record<string, unknown>): LedgerBill {
  return {
    id: String(row.id),
    amountMinor: Number(row.amount_minor),
    paidMinor: Number(row.paid_minor),
    status: row.status as LedgerBill['status'],
    dueAt: new Date(row.due_at as string | Date),
  };
}

const BILL_COLUMNS = 'amount_minor, paid_minor, status, due_at';
const PAYMENT_COLUMNS = 'amount_minor, allocations, balance_credit_minor, reversed_by';

export async function ingestBills(
  db: Db,
  items: readonly BillItem[],
  options: IngestOptions,
): Promise<BatchResult> {
  const spec: BatchSpec = {
    paidAdjustment: 'bill-revision',
    table: 'bills',
    columns: BILL_COLUMNS,
    noun: 'bill',
  };
  return ingestBatch(db, items, options, spec, async (tx, { stored, results, writes }) => {
    const rows: Record<string, unknown>[] = [];
    const credits: BalanceChange[] = [];
    const events: EventRow[] = [];
    const evaluate = new Set<string>();
    for (const { item } of writes.values()) {
      const before = stored.get(item.id);
      const revision = reviseBill(before === undefined ? null : ledgerBill(before), item);
      const dueBefore = before !== undefined && ledgerBill(before).dueAt <= options.now;
      if (dueBefore || item.dueAt <= options.now || revision.balanceCreditMinor > 0) {
        evaluate.add(item.accountId);
      }
      rows.push({
        id: item.id,
        account_id: item.accountId,
        product: item.product,
        amount_minor: item.amountMinor,
        paid_minor: revision.bill.paidMinor,
        issued_at: item.issuedAt.toISOString(),
        due_at: item.dueAt.toISOString(),
        status: revision.bill.status,
        source_version: item.version,
        source_hash: item.hash,
      });
      if (revision.balanceCreditMinor > 0) {
        credits.push({ accountId: item.accountId, deltaMinor: revision.balanceCreditMinor });
        events.push({
          accountId: item.accountId,
          kind: 'bill-surplus-credited',
          detail: {
            billId: item.id,
            version: item.version,
            amountMinor: revision.balanceCreditMinor,
          },
          idempotencyKey: `bill-surplus-v1-${item.id}-${item.version}`,
        });
      }
    }
    const written = await upsertRows(
      tx,
      {
        table: 'bills',
        columns: [
          ...OWNED_COLUMNS,
          ['product', 'text'],
          ['amount_minor', 'bigint'],
          ['paid_minor', 'bigint'],
          ['issued_at', 'timestamptz'],
          ['due_at', 'timestamptz'],
          ['status', 'text'],
        ],
      },
      rows,
    );
    checkWritten('bill', items, writes, written);
    await applyBalanceChanges(tx, credits);
    await appendEventRows(tx, options.actor, events);
    return { results, changedAccounts: [...evaluate] };
  });
}

// ---------------------------------------------------------------------------------------------
// Payments, their reversals, top-ups: money moves through the ledger of each account's bills.

/**
 * The bills a batch of payments may touch, locked: the accounts' bills that still owe, plus the
 * named ones (a bill a payment names, the bills an earlier allocation paid).
 */
async function loadLedger(
  tx: Tx,
  accountIds: readonly string[],
  billIds: readonly string[],
): Promise<Map<string, Map<string, LedgerBill>>> {
  const rows = await queryRows<Record<string, unknown> & { account_id: string }>(
    tx,
    sql`select id, account_id, ${sql.raw(BILL_COLUMNS)} from bills
         where (account_id in (select ${textArray(accountIds)})
                and status = 'unpaid' and paid_minor < amount_minor)
            or id in (select ${textArray(billIds)})
         order by id for update`,
  );
  const ledger = new Map<string, Map<string, LedgerBill>>();
  for (const row of rows) billsOf(ledger, row.account_id).set(String(row.id), ledgerBill(row));
  return ledger;
}

/** The account's bills in the batch's ledger (created empty on first use). */
function billsOf(
  ledger: Map<string, Map<string, LedgerBill>>,
  accountId: string,
): Map<string, LedgerBill> {
  let bills = ledger.get(accountId);
  if (bills === undefined) {
    bills = new Map<string, LedgerBill>();
    ledger.set(accountId, bills);
  }
  return bills;
}

/** Writes the bills whose paid amount changed (one statement). */
async function writeLedger(tx: Tx, changed: Map<string, LedgerBill>): Promise<void> {
  if (changed.size === 0) return;
  const rows = [...changed.values()].map((b) => ({
    id: b.id,
    paid: b.paidMinor,
    status: b.status,
  }));
  await tx.execute(sql`
    update bills b set paid_minor = x.paid, status = x.status, updated_at = now()
      from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(id text, paid bigint, status text)
     where b.id = x.id`);
}

interface PaymentRow extends StoredRow {
  amount_minor: string | number;
  allocations: Allocation[] | null;
  balance_credit_minor: string | number;
  reversed_by: string | null;
}

function effectOf(row: PaymentRow): PaymentEffect | null {
  if (row.allocations === null) return null;
  return {
    allocations: row.allocations.map((a) => ({
      billId: a.billId,
      amountMinor: Number(a.amountMinor),
    })),
    balanceCreditMinor: Number(row.balance_credit_minor),
  };
}

export async function ingestPayments(
  db: Db,
  items: readonly PaymentItem[],
  options: IngestOptions,
): Promise<BatchResult> {
  // A newer version of a payment undoes the old allocation first: a reversal of sorts.
  const spec: BatchSpec = {
    paidAdjustment: 'reversal',
    table: 'payments',
    columns: PAYMENT_COLUMNS,
    noun: 'payment',
  };
  return ingestBatch(db, items, options, spec, async (tx, batch) => {
    const { results, writes } = batch;
    const stored = batch.stored as Map<string, PaymentRow>;

    const accountIds = changedAccounts(writes);
    const named = [...writes.values()].flatMap(({ item }) => [
      ...(item.billId === null ? [] : [item.billId]),
      ...(stored.get(item.id)?.allocations ?? []).map((a) => a.billId),
    ]);
    const ledger = await loadLedger(tx, accountIds, named);
    const changedBills = new Map<string, LedgerBill>();
    const balance: BalanceChange[] = [];
    const rows: Record<string, unknown>[] = [];
    const events: EventRow[] = [];
    const effects = new Map<string, PaymentEffect>();
    const issues: IngestIssue[] = [];
    const indexOf = new Map(items.map((p, i) => [p.id, i]));

    for (const { item } of writes.values()) {
      const bills = billsOf(ledger, item.accountId);
      const update = (changed: readonly LedgerBill[]) => {
        for (const b of changed) {
          bills.set(b.id, b);
          changedBills.set(b.id, b);
        }
      };
      const before = stored.get(item.id);
      if (before !== undefined) {
        const index = indexOf.get(item.id) ?? 0;
        if (before.reversed_by !== null) {
          issues.push({
            index,
            id: item.id,
            field: 'version',
            message: `payment ${item.id} was reversed by ${before.reversed_by}; it cannot change`,
          });
          continue;
        }
        const old = effectOf(before);
        if (old === null) {
          issues.push({
            index,
            id: item.id,
            field: 'version',
            message: `payment ${item.id} was recorded before allocations were kept; it cannot change`,
          });
          continue;
        }
        const undone = reversePayment(old, [...bills.values()]);
        update(undone.bills);
        balance.push({ accountId: item.accountId, deltaMinor: -undone.balanceDebitMinor });
      }
      const allocation = allocatePayment(item.amountMinor, item.billId, [...bills.values()]);
      if (!allocation.ok) {
        issues.push({
          index: indexOf.get(item.id) ?? 0,
          id: item.id,
          field: 'billId',
          message: allocation.message,
        });
        continue;
      }
      update(allocation.bills);
      balance.push({ accountId: item.accountId, deltaMinor: allocation.effect.balanceCreditMinor });
      effects.set(item.id, allocation.effect);
      rows.push({
        id: item.id,
        account_id: item.accountId,
        amount_minor: item.amountMinor,
        bill_id: item.billId,
        allocations: allocation.effect.allocations,
        balance_credit_minor: allocation.effect.balanceCreditMinor,
        source_version: item.version,
        source_hash: item.hash,
      });
      events.push({
        accountId: item.accountId,
        kind: 'payment-received',
        detail: {
          paymentId: item.id,
          version: item.version,
          amountMinor: item.amountMinor,
          billId: item.billId,
          allocations: allocation.effect.allocations,
          balanceCreditMinor: allocation.effect.balanceCreditMinor,
        },
        idempotencyKey:
          item.version === 0 && before === undefined
            ? `payment-v1-${item.id}`
            : `payment-v1-${item.id}-${item.version}`,
      });
    }
    if (issues.length > 0) {
      const status = issues.every((i) => i.field === 'billId') ? 422 : 409;
      throw new IngestRejected(
        status,
        status === 422 ? 'payment-refused' : 'version-conflict',
        issues,
      );
    }

    const written = await upsertRows(
      tx,
      {
        table: 'payments',
        columns: [
          ...OWNED_COLUMNS,
          ['amount_minor', 'bigint'],
          ['bill_id', 'text'],
          ['allocations', 'jsonb'],
          ['balance_credit_minor', 'bigint'],
        ],
      },
      rows,
    );
    checkWritten('payment', items, writes, written);
    await writeLedger(tx, changedBills);
    await applyBalanceChanges(tx, balance);
    await appendEventRows(tx, options.actor, events);
    const withEffects = results.map((r) => {
      const effect = r.result === 'duplicate' ? undefined : effects.get(r.id);
      return effect === undefined ? r : { ...r, ...effect };
    });
    return { results: withEffects, changedAccounts: accountIds };
  });
}

export async function ingestPaymentReversals(
  db: Db,
  items: readonly ReversalItem[],
  options: IngestOptions,
): Promise<BatchResult> {
  const spec: BatchSpec = {
    paidAdjustment: 'reversal',
    table: 'payment_reversals',
    columns: 'payment_id',
    noun: 'payment reversal',
  };
  return ingestBatch(db, items, options, spec, async (tx, { stored, results, writes }) => {
    const payments = (await loadStored(
      tx,
      'payments',
      PAYMENT_COLUMNS,
      [...writes.values()].map((w) => w.item.paymentId),
    )) as Map<string, PaymentRow>;
    const accountIds = changedAccounts(writes);
    const named = [...writes.values()].flatMap(
      ({ item }) => payments.get(item.paymentId)?.allocations?.map((a) => a.billId) ?? [],
    );
    const ledger = await loadLedger(tx, accountIds, named);
    const changedBills = new Map<string, LedgerBill>();
    const balance: BalanceChange[] = [];
    const rows: Record<string, unknown>[] = [];
    const events: EventRow[] = [];
    const issues: IngestIssue[] = [];
    const indexOf = new Map(items.map((r, i) => [r.id, i]));

    for (const { item, created } of writes.values()) {
      const index = indexOf.get(item.id) ?? 0;
      const previous = stored.get(item.id);
      if (previous !== undefined && previous.payment_id !== item.paymentId) {
        issues.push({
          index,
          id: item.id,
          field: 'paymentId',
          message: `payment reversal ${item.id} reverses ${String(previous.payment_id)}; it cannot move to another payment`,
        });
        continue;
      }
      rows.push({
        id: item.id,
        account_id: item.accountId,
        payment_id: item.paymentId,
        reason: item.reason,
        source_version: item.version,
        source_hash: item.hash,
      });
      if (!created && previous !== undefined) continue; // a newer version only changes the reason
      const payment = payments.get(item.paymentId);
      const refuse = (message: string) =>
        issues.push({ index, id: item.id, field: 'paymentId', message });
      if (payment === undefined || payment.account_id !== item.accountId) {
        refuse(`payment ${item.paymentId} not found for the account`);
        continue;
      }
      if (payment.reversed_by !== null && payment.reversed_by !== item.id) {
        refuse(`payment ${item.paymentId} was already reversed by ${payment.reversed_by}`);
        continue;
      }
      const effect = effectOf(payment);
      if (effect === null) {
        refuse(
          `payment ${item.paymentId} was recorded before allocations were kept; reverse it by hand`,
        );
        continue;
      }
      const bills = billsOf(ledger, item.accountId);
      const undone = reversePayment(effect, [...bills.values()]);
      for (const b of undone.bills) {
        bills.set(b.id, b);
        changedBills.set(b.id, b);
      }
      balance.push({ accountId: item.accountId, deltaMinor: -undone.balanceDebitMinor });
      payment.reversed_by = item.id;
      events.push({
        accountId: item.accountId,
        kind: 'payment-reversed',
        detail: {
          reversalId: item.id,
          paymentId: item.paymentId,
          amountMinor: Number(payment.amount_minor),
          restored: effect.allocations,
          balanceDebitMinor: undone.balanceDebitMinor,
          reason: item.reason,
        },
        idempotencyKey: `payment-reversal-v1-${item.id}`,
      });
    }
    if (issues.length > 0) throw new IngestRejected(422, 'reversal-refused', issues);

    // A reversal stays with its payment: only its reason changes.
    const written = await upsertRows(
      tx,
      {
        table: 'payment_reversals',
        columns: [...OWNED_COLUMNS, ['payment_id', 'text'], ['reason', 'text']],
        insertOnly: ['payment_id'],
      },
      rows,
    );
    checkWritten('payment reversal', items, writes, written);
    const reversed = events.map((e) => ({ id: e.detail.paymentId, by: e.detail.reversalId }));
    if (reversed.length > 0) {
      await tx.execute(sql`
        update payments p set reversed_by = x.by, updated_at = now()
          from jsonb_to_recordset(${JSON.stringify(reversed)}::jsonb) as x(id text, by text)
         where p.id = x.id`);
    }
    await writeLedger(tx, changedBills);
    await applyBalanceChanges(tx, balance);
    await appendEventRows(tx, options.actor, events);
    return { results, changedAccounts: accountIds };
  });
}

export async function ingestTopups(
  db: Db,
  items: readonly TopupItem[],
  options: IngestOptions,
): Promise<BatchResult> {
  const spec: BatchSpec = {
    paidAdjustment: '',
    table: 'topups',
    columns: 'amount_minor',
    noun: 'top-up',
  };
  return ingestBatch(db, items, options, spec, async (tx, { stored, results, writes }) => {
    const rows: Record<string, unknown>[] = [];
    const balance: BalanceChange[] = [];
    const events: EventRow[] = [];
    for (const { item } of writes.values()) {
      const before = stored.get(item.id);
      const delta = item.amountMinor - (before === undefined ? 0 : Number(before.amount_minor));
      balance.push({ accountId: item.accountId, deltaMinor: delta });
      rows.push({
        id: item.id,
        account_id: item.accountId,
        amount_minor: item.amountMinor,
        source_version: item.version,
        source_hash: item.hash,
      });
      events.push({
        accountId: item.accountId,
        kind: 'topup-received',
        detail: {
          topupId: item.id,
          version: item.version,
          amountMinor: item.amountMinor,
          deltaMinor: delta,
        },
        idempotencyKey:
          item.version === 0 && before === undefined
            ? `topup-v1-${item.id}`
            : `topup-v1-${item.id}-${item.version}`,
      });
    }
    const written = await upsertRows(
      tx,
      {
        table: 'topups',
        columns: [...OWNED_COLUMNS, ['amount_minor', 'bigint']],
      },
      rows,
    );
    checkWritten('top-up', items, writes, written);
    await applyBalanceChanges(tx, balance);
    await appendEventRows(tx, options.actor, events);
    return { results, changedAccounts: changedAccounts(writes) };
  });
}

// ---------------------------------------------------------------------------------------------
// Records written as plain rows.

/** How one kind of row is upserted. Column names are this file's constants, never input. */
export interface RowKind {
  /** Singular noun for messages, e.g. "service". */
  readonly noun: string;
  readonly table: string;
  /** `name type` pairs of the row as `jsonb_to_recordset` reads it (id and account_id first). */
  readonly columns: readonly (readonly [string, string])[];
  /** Columns an update leaves alone (besides id and account_id), e.g. an opening balance. */
  readonly insertOnly?: readonly string[];
  /** Extra assignments of an update, e.g. `version = accounts.version + 1`. */
  readonly onUpdate?: string;
  /** Rows whose account need not exist yet (accounts themselves). */
  readonly createsAccount?: boolean;
  /** How rows are found by the caller's id; default: the `id` column. */
  readonly key?: RowKey;
  /** The table has no `updated_at` column (usage records are reference data). */
  readonly noUpdatedAt?: boolean;
  /** false: the rows play no part in enforcement (orders, licenses, usage): no evaluation. */
  readonly evaluates?: boolean;
}

/** Usage records: unique by the writer's source id within the account. */
export const USAGE_KEY: RowKey = {
  select: "account_id || '/' || source_id",
  match:
    "(account_id, source_id) in (select split_part(k, '/', 1), split_part(k, '/', 2) from ids)",
  conflict: 'account_id, source_id',
};

export async function ingestRows(
  db: Db,
  kind: RowKind,
  items: readonly RowItem[],
  options: IngestOptions,
  /** A check of each write against the stored row (e.g. a currency that may not change). */
  validate?: (item: RowItem, stored: StoredRow | undefined) => string | null,
): Promise<BatchResult> {
  const key = kind.key ?? ID_KEY;
  const ownAccount = key.account === 'id';
  const names = kind.columns.map(([name]) => name);
  const spec: BatchSpec = {
    paidAdjustment: '',
    table: kind.table,
    columns: names.filter((n) => n !== 'id' && n !== 'account_id').join(', ') || 'id',
    noun: kind.noun,
    key,
    createsAccount: kind.createsAccount === true,
  };
  return ingestBatch(db, items, options, spec, async (tx, { stored, results, writes }) => {
    if (validate !== undefined) {
      const issues = [...writes.values()].flatMap(({ item }) => {
        const message = validate(item, stored.get(item.id));
        return message === null
          ? []
          : [{ index: items.indexOf(item), id: item.id, field: 'body', message }];
      });
      if (issues.length > 0) throw new IngestRejected(422, 'invalid-change', issues);
    }
    const rows = [...writes.values()].map(({ item }) => ({
      ...item.row,
      ...(key.select === 'id' ? { id: item.id } : {}),
      ...(ownAccount ? {} : { account_id: item.accountId }),
      source_version: item.version,
      source_hash: item.hash,
    }));
    const written = await upsertRows(tx, kind, rows);
    checkWritten(kind.noun, items, writes, written);
    return {
      results,
      changedAccounts: kind.evaluates === false ? [] : changedAccounts(writes),
    };
  });
}
