/**
 * The one definition of each text format an account's fields must have, shared by the ingest
 * API's validation, the database's CHECK constraints (the `*_PATTERN` texts are POSIX-compatible
 * regexes) and the domain.
 */

/** ISO 4217 currency code, upper case, e.g. "CNY". */
export const CURRENCY_PATTERN = '^[A-Z]{3}$';
export const CURRENCY_RE = new RegExp(CURRENCY_PATTERN);

/** BCP 47 language tag, e.g. "en" or "zh-CN" (the shape only). */
export const LOCALE_PATTERN = '^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$';
export const LOCALE_RE = new RegExp(LOCALE_PATTERN);

/** E.164 phone number: "+" and up to 15 digits, e.g. +8613800000000. */
export const PHONE_PATTERN = '^\\+[1-9][0-9]{1,14}$';
export const PHONE_RE = new RegExp(PHONE_PATTERN);
