// `npm run build`: bundles the daemon (dist/main.js) and the `overdue-worker` command
// (dist/cli.js) into plain ESM that node runs without tsx or any loader.
//
// Only the project's own code (src/, jobs/) is bundled; every package stays an import from
// node_modules. Several packages find files next to their own modules at run time (PGlite's wasm
// and data files, bull-board's UI, ioredis' package.json, msgpackr's optional native addon,
// pino's worker threads), and bundling the rest was measured to cost memory, not save it:
// modules node loads on demand (most of twilio) would be parsed up front.
//
// Files the bundle reads relative to itself: drizzle/ (migrations, found one level up from
// dist/, see src/adapters/db/migrate.ts).
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const outdir = 'dist';

const result = await build({
  entryPoints: { main: 'src/main.ts', cli: 'src/cli/run.ts' },
  outdir,
  bundle: true,
  packages: 'external',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Class and function names as in the sources (error types in logs, stack traces).
  keepNames: true,
  // dist/*.js.map; `node --enable-source-maps dist/main.js` maps stack traces to the sources.
  sourcemap: 'linked',
  logLevel: 'warning',
  write: false,
});

// Each file is replaced by a rename, so a daemon starting meanwhile reads the old build or the new
// one, never half a file; files of an earlier build that this one did not write are removed.
mkdirSync(outdir, { recursive: true });
const written = new Set();
for (const file of result.outputFiles) {
  const name = path.relative(path.resolve(outdir), file.path);
  const temporary = `${file.path}.${process.pid}.tmp`;
  // dist/cli.js starts with the shebang of src/cli/run.ts: executable, to be linked as a command.
  writeFileSync(temporary, file.contents, { mode: name === 'cli.js' ? 0o755 : 0o644 });
  renameSync(temporary, file.path);
  written.add(name);
}
for (const name of readdirSync(outdir)) {
  if (!written.has(name) && !name.endsWith('.tmp')) {
    rmSync(path.join(outdir, name), { recursive: true, force: true });
  }
}
