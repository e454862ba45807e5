/**
 * One way to turn an error into text for everything someone other than the customer reads: log
 * lines (the logger's `err` serializer), job failure reasons (BullMQ's `failedReason` and
 * `stacktrace`, which the dashboard's read-only viewer sees), the `last_error` columns of the
 * outbox and notifications, and HTTP answers. None of them may carry personal data.
 *
 * - A database error (a SQLSTATE anywhere in the cause chain) is described by its SQLSTATE, the
 *   condition's name, and the constraint, table and column PostgreSQL names; never by its
 *   message or detail, nor by the SQL or its parameters. drizzle's DrizzleQueryError reads
 *   "Failed query: <sql> params: <values>", PostgreSQL's detail quotes the row ("Failing row
 *   contains (…)", "Key (email)=(…) already exists"), and some messages quote a value (22P02) or
 *   are whatever a trigger's RAISE wrote.
 * - Any other error keeps its message (and its causes'), with e-mail addresses and phone numbers
 *   masked: a provider's reply may quote the recipient (SMTP "550 <a@b>: unknown user", Twilio
 *   21211 "The 'To' number +1… is not a valid phone number").
 *
 * No imports: the logger, the adapters, the jobs and the HTTP layer all use it.
 */

/** What may be said about a database error. */
export interface DbErrorInfo {
  /** SQLSTATE, e.g. 23514. */
  readonly code: string;
  /** PostgreSQL's condition name for the SQLSTATE (or its class), e.g. check_violation. */
  readonly condition: string;
  readonly constraint?: string;
  readonly table?: string;
  readonly column?: string;
  /** The PL/pgSQL function that raised it (trigger functions), from the error's context. */
  readonly routine?: string;
}

/** SQLSTATE: a class of two digits or one of the lettered classes, then three characters. */
const SQLSTATE = /^(?:[0-9]{2}|F0|HV|P0|XX)[0-9A-Z]{3}$/;

/** Condition names (PostgreSQL, Appendix A) of the codes this daemon meets. */
const CONDITIONS: Readonly<Record<string, string>> = {
  '08000': 'connection_exception',
  '08003': 'connection_does_not_exist',
  '08006': 'connection_failure',
  '22001': 'string_data_right_truncation',
  '22003': 'numeric_value_out_of_range',
  '22007': 'invalid_datetime_format',
  '22008': 'datetime_field_overflow',
  '22P02': 'invalid_text_representation',
  '23502': 'not_null_violation',
  '23503': 'foreign_key_violation',
  '23505': 'unique_violation',
  '23514': 'check_violation',
  '23P01': 'exclusion_violation',
  '25P02': 'in_failed_sql_transaction',
  '40001': 'serialization_failure',
  '40P01': 'deadlock_detected',
  '42501': 'insufficient_privilege',
  '42703': 'undefined_column',
  '42P01': 'undefined_table',
  '53300': 'too_many_connections',
  '55P03': 'lock_not_available',
  '57014': 'query_canceled',
  '57P01': 'admin_shutdown',
  P0001: 'raise_exception',
};

const CLASSES: Readonly<Record<string, string>> = {
  '08': 'connection_exception',
  '22': 'data_exception',
  '23': 'integrity_constraint_violation',
  '25': 'invalid_transaction_state',
  '40': 'transaction_rollback',
  '42': 'syntax_error_or_access_rule_violation',
  '53': 'insufficient_resources',
  '54': 'program_limit_exceeded',
  '55': 'object_not_in_prerequisite_state',
  '57': 'operator_intervention',
  '58': 'system_error',
  P0: 'plpgsql_error',
  XX: 'internal_error',
};

/** Identifiers PostgreSQL reports: names of constraints, tables, columns and functions. */
const IDENT = /^[A-Za-z_][A-Za-z0-9_$.]{0,126}$/;

/** How deep a cause chain is followed. */
const MAX_DEPTH = 5;

type Fields = Error & Record<string, unknown>;

function ident(...values: unknown[]): string | undefined {
  for (const v of values) if (typeof v === 'string' && IDENT.test(v)) return v;
  return undefined;
}

function* chain(error: unknown): Generator<Fields> {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_DEPTH && current instanceof Error; depth++) {
    yield current as Fields;
    current = (current as Fields).cause;
  }
}

/** What may be said about this one error, when it is a database error. */
function infoOf(e: Fields): DbErrorInfo | null {
  if (typeof e.code !== 'string' || !SQLSTATE.test(e.code)) return null;
  const code = e.code;
  const constraint = ident(e.constraint_name, e.constraint);
  const table = ident(e.table_name, e.table);
  const column = ident(e.column_name, e.column);
  const where = typeof e.where === 'string' ? /PL\/pgSQL function ([\w.$]+)\(/.exec(e.where) : null;
  const routine = ident(where?.[1]);
  return {
    code,
    condition: CONDITIONS[code] ?? CLASSES[code.slice(0, 2)] ?? 'database_error',
    ...(constraint === undefined ? {} : { constraint }),
    ...(table === undefined ? {} : { table }),
    ...(column === undefined ? {} : { column }),
    ...(routine === undefined ? {} : { routine }),
  };
}

/**
 * The database error anywhere in the cause chain (drizzle wraps the driver's), or null. Reads
 * postgres.js's fields (`constraint_name`, `table_name`, `column_name`) and PGlite's
 * (`constraint`, `table`, `column`).
 */
export function dbErrorInfo(error: unknown): DbErrorInfo | null {
  for (const e of chain(error)) {
    const info = infoOf(e);
    if (info !== null) return info;
  }
  return null;
}

/**
 * True for a database error one row's data can cause (SQLSTATE class 22, data exception, or 23,
 * integrity constraint violation): a batch statement failing so is worth retrying row by row.
 */
export function causedByRowData(error: unknown): boolean {
  const code = dbErrorInfo(error)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

function describeDb(db: DbErrorInfo): string {
  const where = [
    db.constraint === undefined ? null : `constraint ${db.constraint}`,
    db.table === undefined ? null : `table ${db.table}`,
    db.column === undefined ? null : `column ${db.column}`,
    db.routine === undefined ? null : `in ${db.routine}`,
  ].filter((x): x is string => x !== null);
  return `database error ${db.code} ${db.condition}${where.length > 0 ? ` (${where.join(', ')})` : ''}`;
}

/** drizzle's DrizzleQueryError (matched by shape: this module imports nothing). */
function isQueryWrapper(e: Fields): boolean {
  return 'query' in e && 'params' in e;
}

const EMAIL = /[^\s<>()[\]"',;:]+@[^\s<>()[\]"',;:]+\.[A-Za-z]{2,}/g;
/**
 * A phone number as the daemon stores and providers quote it: E.164, "+" and 7 to 15 digits,
 * maybe grouped by spaces, dots or dashes. Bare digit runs are left alone: ids, keys and dates
 * in messages are made of them.
 */
const PHONE = /\+\d(?:[\s.-]?\d){6,14}/g;

/** Longest text scanned and longest description kept, characters. */
const MAX_SCAN = 4_000;
const MAX_LENGTH = 500;

/** The text with e-mail addresses and phone numbers masked. */
export function scrubPersonalData(text: string): string {
  return text.slice(0, MAX_SCAN).replace(EMAIL, '[email]').replace(PHONE, '[phone]');
}

/** A one-line description without personal data (see the module comment). */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return scrubPersonalData(String(error)).slice(0, MAX_LENGTH);
  const parts: string[] = [];
  let wrapperAt = -1;
  for (const e of chain(error)) {
    const db = infoOf(e);
    if (db !== null) {
      // The wrapper said nothing the database error does not say better.
      if (wrapperAt >= 0) parts.splice(wrapperAt, 1);
      parts.push(describeDb(db));
      break;
    }
    // A failed query's own message is its SQL and parameters: only its cause is told.
    if (isQueryWrapper(e)) {
      if (wrapperAt < 0) {
        wrapperAt = parts.length;
        parts.push('database query failed');
      }
      continue;
    }
    const code = typeof e.code === 'string' && /^[A-Z][A-Z0-9_]{1,39}$/.test(e.code) ? e.code : '';
    const message = e.message.split('\n')[0] ?? '';
    const text = code !== '' && !message.includes(code) ? `${code} ${message}`.trim() : message;
    if (text !== '' && !parts.includes(text)) parts.push(text);
  }
  const joined = parts.length > 0 ? parts.join(': ') : error.name;
  return scrubPersonalData(joined).slice(0, MAX_LENGTH);
}

/** The stack's frames ("    at …" lines) under a safe first line; the message part dropped. */
export function safeStack(error: Error, header: string): string {
  const frames = (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
  return [header, ...frames.slice(0, 20)].join('\n');
}

export interface SerializedError {
  readonly type: string;
  readonly message: string;
  readonly sqlState?: string;
  readonly constraint?: string;
  readonly table?: string;
  readonly column?: string;
  readonly stack?: string;
}

/**
 * The logger's serializer for `err` (and `error`): a whitelist of fields instead of pino's
 * default, which copies every enumerable property of the error and its causes (drizzle's
 * `params`, the driver's `detail`, ioredis's `command.args`).
 */
export function serializeError(value: unknown): unknown {
  if (typeof value === 'string') return scrubPersonalData(value);
  if (!(value instanceof Error)) {
    // Not an Error: only its message, if it has one, is kept.
    if (value !== null && typeof value === 'object' && 'message' in value) {
      return { message: scrubPersonalData(String(value.message)) };
    }
    return value;
  }
  const message = describeError(value);
  const db = dbErrorInfo(value);
  // drizzle's DrizzleQueryError leaves `name` at "Error": its class says more.
  const type = (value.name !== 'Error' && value.name) || value.constructor.name || 'Error';
  return {
    type,
    message,
    ...(db === null
      ? {}
      : {
          sqlState: db.code,
          ...(db.constraint === undefined ? {} : { constraint: db.constraint }),
          ...(db.table === undefined ? {} : { table: db.table }),
          ...(db.column === undefined ? {} : { column: db.column }),
        }),
    stack: safeStack(value, `${type}: ${message}`),
  } satisfies SerializedError;
}
