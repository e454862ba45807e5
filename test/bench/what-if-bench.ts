/**
 * The fleet what-if's rate: `npm run bench:what-if` (WHAT_IF_ACCOUNTS, default 1,000,000).
 * Generates the bench's fleet (generate.ts) in a fresh database, then in the same run measures:
 *
 *   baseline  every account's snapshot read page by page in read-only transactions (the same
 *             statements as the what-if, no decision): the floor the what-if stands on;
 *   what-if   the same pages decided with the current and the proposed rules
 *             (PROTECTION_AMOUNT_MINOR=20000, PROTECTION_DURATION=3d).
 *
 * Prints accounts/s for both and their ratio, and the process's peak RSS. The database is dropped
 * at the end unless BENCH_KEEP_DB=1.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';
import { forEachSnapshotPage, whatIf, WHAT_IF_PAGE } from '../../src/adapters/db/what-if';
import { loadConfig } from '../../src/config';
import { proposedRules } from '../../src/config-overrides';
import { envNumber, log, round } from './common';
import { generate } from './generate';

const SERVER = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const N = envNumber('WHAT_IF_ACCOUNTS', 1_000_000);

function dbUrl(name: string): string {
  const url = new URL(SERVER);
  url.pathname = `/${name}`;
  return url.toString();
}

async function main(): Promise<void> {
  const loaded = loadConfig({});
  if (!loaded.ok) throw new Error('default configuration refused');
  const config = loaded.config;
  const proposed = proposedRules(config, [
    'PROTECTION_AMOUNT_MINOR=20000',
    'PROTECTION_DURATION=3d',
  ]);
  if (!proposed.ok) throw new Error('proposal refused');

  const name = `ow_bench_whatif_${randomBytes(4).toString('hex')}`;
  const admin = postgres(SERVER, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`create database "${name}"`);
  log(`database ${name}`);
  const handle = await createDb(dbUrl(name), '/unused', { poolSize: 2 });
  try {
    await migrate(handle.db);
    const t0 = performance.now();
    await generate(dbUrl(name), N);
    log(`generated ${N} accounts in ${round((performance.now() - t0) / 1000, 1)} s`);
    const at = new Date();

    // Baseline: the same reads, page by page, without deciding.
    const b0 = performance.now();
    const read = await forEachSnapshotPage(
      handle.db,
      at,
      WHAT_IF_PAGE,
      config.rules.revertNoticeWindowMs,
      () => undefined,
    );
    const baselineS = (performance.now() - b0) / 1000;

    const w0 = performance.now();
    const report = await whatIf(handle.db, config.rules, proposed.rules, {
      at,
      pageSize: WHAT_IF_PAGE,
      sample: 3,
    });
    const whatIfS = (performance.now() - w0) / 1000;
    const baselineRate = read / baselineS;
    const whatIfRate = report.accounts / whatIfS;
    const result = {
      accounts: report.accounts,
      baseline: { seconds: round(baselineS, 1), perSecond: Math.round(baselineRate) },
      whatIf: { seconds: round(whatIfS, 1), perSecond: Math.round(whatIfRate) },
      ratioToBaseline: round(whatIfRate / baselineRate, 2),
      changed: report.changed,
      kinds: report.kinds.map((k) => ({ decision: k.decision, more: k.more, fewer: k.fewer })),
      peakRssMb: round(process.resourceUsage().maxRSS / 1024, 1),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await handle.close();
    if (process.env.BENCH_KEEP_DB === '1') log(`kept database ${name}`);
    else await admin.unsafe(`drop database if exists "${name}" with (force)`);
    await admin.end({ timeout: 5 });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
