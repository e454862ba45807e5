import { DrizzleQueryError } from 'drizzle-orm/errors';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import {
  dbErrorInfo,
  describeError,
  scrubPersonalData,
  serializeError,
} from '../../src/describe-error';
import { createLogger } from '../../src/logger';

/** Errors as the driver and drizzle build them, carrying a customer's contact. */
const EMAIL = 'jane.doe@example.com';
const PHONE = '+8613800000000';

function checkViolation(): Error {
  const pg = new postgres.PostgresError({
    message: 'new row for relation "notifications" violates check constraint "notifications_x"',
    severity: 'ERROR',
    code: '23514',
    detail: `Failing row contains (1, k, a, email, suspended, en, ${EMAIL}, ${PHONE}).`,
    schema_name: 'public',
    table_name: 'notifications',
    constraint_name: 'notifications_x',
  } as unknown as string);
  return new DrizzleQueryError(
    'insert into "notifications" ("recipient") values ($1)',
    [EMAIL, PHONE],
    pg,
  );
}

describe('error descriptions without personal data', () => {
  it('a failed query is its SQLSTATE, condition, constraint and table, never its SQL or parameters', () => {
    const error = checkViolation();
    expect(error.message).toContain(EMAIL); // what drizzle itself says
    expect(describeError(error)).toBe(
      'database error 23514 check_violation (constraint notifications_x, table notifications)',
    );
    expect(dbErrorInfo(error)).toEqual({
      code: '23514',
      condition: 'check_violation',
      constraint: 'notifications_x',
      table: 'notifications',
    });
  });

  it("PGlite's field names and a trigger's RAISE (its message dropped, its function named)", () => {
    const raised = Object.assign(new Error(`bad contact ${EMAIL}`), {
      code: 'P0001',
      where: 'PL/pgSQL function reject_contact() line 3 at RAISE',
      table: 'accounts',
    });
    expect(describeError(raised)).toBe(
      'database error P0001 raise_exception (table accounts, in reject_contact)',
    );
  });

  it('a failed query without a database error (connection lost) tells the cause, not the query', () => {
    const lost = Object.assign(new Error('write CONNECTION_CLOSED 127.0.0.1:5432'), {
      code: 'CONNECTION_CLOSED',
    });
    const error = new DrizzleQueryError('select * from accounts where email = $1', [EMAIL], lost);
    expect(describeError(error)).toBe(
      'database query failed: write CONNECTION_CLOSED 127.0.0.1:5432',
    );
  });

  it('other errors keep their message and causes, with addresses and numbers masked', () => {
    const error = new Error('fetch failed', {
      cause: new Error(`550 5.1.1 <${EMAIL}>: unknown user; To ${PHONE} / +1 555 123 4567`),
    });
    expect(describeError(error)).toBe(
      'fetch failed: 550 5.1.1 <[email]>: unknown user; To [phone] / [phone]',
    );
    // Keys, ids and instants are digits too, and stay.
    const plain = 'release-v1-inst-1234567890-e1 not before 2026-03-05T02:00:00.000Z';
    expect(scrubPersonalData(plain)).toBe(plain);
    // EPIPE looks like a SQLSTATE by its shape, but is no database error.
    expect(dbErrorInfo(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBeNull();
  });

  it("the logger's err serializer keeps only safe fields", () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (l: string) => void lines.push(l) });
    logger.error({ err: checkViolation() }, 'evaluation failed');
    logger.warn({ error: `refused ${PHONE}` }, 'provider refused');
    const text = lines.join('\n');
    expect(text).not.toContain(EMAIL);
    expect(text).not.toContain(PHONE);
    expect(text).not.toContain('insert into');
    const [first] = lines.map((l) => JSON.parse(l) as { err?: Record<string, unknown> });
    expect(first?.err).toMatchObject({
      type: 'DrizzleQueryError',
      sqlState: '23514',
      constraint: 'notifications_x',
      table: 'notifications',
    });
    expect(serializeError({ message: `to ${EMAIL}`, detail: EMAIL })).toEqual({
      message: 'to [email]',
    });
  });
});
