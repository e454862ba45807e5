import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, MIGRATIONS_FOLDER } from '../../src/adapters/db/migrate';
import { createTestDatabase, type TestDatabase } from '../support/db';

/**
 * Upgrading a database: the pending migrations' indexes on existing tables are built
 * CONCURRENTLY before the migrations' transaction (src/adapters/db/migrate.ts).
 */

let t: TestDatabase | undefined;
let folder: string | undefined;
afterEach(async () => {
  await t?.drop();
  t = undefined;
  if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
  folder = undefined;
});

/** A copy of drizzle/ that stops after migration `upTo` (its journal index). */
function migrationsUpTo(upTo: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ow-migrations-'));
  cpSync(MIGRATIONS_FOLDER, dir, { recursive: true });
  const journalPath = path.join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { idx: number }[] };
  journal.entries = journal.entries.filter((e) => e.idx <= upTo);
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

async function indexes(db: TestDatabase) {
  return db.raw<{ name: string; valid: boolean }[]>`
    select c.relname as name, i.indisvalid as valid
      from pg_index i join pg_class c on c.oid = i.indexrelid
      join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' order by 1`;
}

describe('migrations on an existing database', () => {
  it('build the new indexes of existing tables concurrently, the rest in the migration', async () => {
    t = await createTestDatabase({ migrated: false });
    folder = migrationsUpTo(13);
    await migrate(t.db, folder);
    await t.raw`insert into accounts (id, currency, email) values ('a-1', 'USD', 'A@example.com')`;
    const log: string[] = [];
    await migrate(t.db, MIGRATIONS_FOLDER, (m) => log.push(m));
    const built = log.map((l) => /^index (\S+) built concurrently/.exec(l)?.[1]);
    // 0014 and 0015 index tables that exist; 0016's index is on a column 0016 adds.
    expect(built).toEqual(
      expect.arrayContaining([
        'accounts_id_prefix_idx',
        'accounts_email_prefix_idx',
        'outbox_failed_updated_idx',
        'enforcement_events_service_changes_idx',
      ]),
    );
    expect(built).not.toContain('accounts_low_balance_idx');
    const after = await indexes(t);
    expect(after.filter((i) => !i.valid)).toEqual([]);
    expect(after.map((i) => i.name)).toContain('accounts_low_balance_idx');
    const [{ n } = { n: 0 }] = await t.raw<{ n: number }[]>`
      select count(*)::int as n from drizzle.__drizzle_migrations`;
    const files = readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith('.sql'));
    expect(n).toBe(files.length);
    // Applying again does nothing.
    const again: string[] = [];
    await migrate(t.db, MIGRATIONS_FOLDER, (m) => again.push(m));
    expect(again).toEqual([]);
  });

  it('an index an interrupted concurrent build left invalid is dropped and built again', async () => {
    t = await createTestDatabase({ migrated: false });
    folder = migrationsUpTo(13);
    await migrate(t.db, folder);
    await t.raw`insert into accounts (id, currency) values ('a-1', 'USD'), ('a-2', 'USD')`;
    // A unique build over duplicates fails and leaves its index behind, invalid.
    await expect(
      t.raw.unsafe(
        'create unique index concurrently "accounts_id_prefix_idx" on accounts (currency)',
      ),
    ).rejects.toThrow();
    expect((await indexes(t)).find((i) => i.name === 'accounts_id_prefix_idx')?.valid).toBe(false);
    await migrate(t.db, MIGRATIONS_FOLDER);
    expect((await indexes(t)).find((i) => i.name === 'accounts_id_prefix_idx')?.valid).toBe(true);
    const [def] = await t.raw<{ d: string }[]>`
      select pg_get_indexdef('accounts_id_prefix_idx'::regclass) as d`;
    expect(def?.d).toContain('text_pattern_ops');
  });

  it('every index of every migration is written CREATE INDEX IF NOT EXISTS', () => {
    for (const file of readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith('.sql'))) {
      const text = readFileSync(path.join(MIGRATIONS_FOLDER, file), 'utf8');
      const bare = text.match(/CREATE (UNIQUE )?INDEX (?!IF NOT EXISTS)/g) ?? [];
      expect({ file, bare }).toEqual({ file, bare: [] });
    }
  });
});
