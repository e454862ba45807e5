/**
 * The one definition of an id written by the billing system (accounts, services, plans, bills…):
 * 1 to 64 of [A-Za-z0-9_.-]. Ids become parts of idempotency keys and BullMQ job ids, so they
 * never contain ':' (BullMQ reserves it). The API, the job catalog, the NOTIFY listener, snapshot
 * validation, key building and the database CHECK constraints all use what is exported here.
 */

/** The characters an id may hold, as the inside of a regex character class. */
export const ID_CHARS = 'A-Za-z0-9_.-';
export const ID_MAX_LENGTH = 64;

/** The unanchored pattern, as messages show it: `[A-Za-z0-9_.-]{1,64}`. */
export const ID_TEXT = `[${ID_CHARS}]{1,${ID_MAX_LENGTH}}`;
/** The anchored pattern: `^[A-Za-z0-9_.-]{1,64}$` (also the text of the SQL CHECK constraints). */
export const ID_PATTERN = `^${ID_TEXT}$`;
export const ID_RE = new RegExp(ID_PATTERN);

/** True if `text` is a well-formed id. */
export function isValidId(text: string): boolean {
  return ID_RE.test(text);
}
