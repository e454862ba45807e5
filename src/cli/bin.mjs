#!/usr/bin/env node
// The `overdue-worker` command. In a development install (`npm ci`, tsx present) it runs the
// TypeScript sources as they are, through tsx; in a production install (`npm ci --omit=dev`, no
// tsx) it runs the bundle that `npm run build` writes, dist/cli.js.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

let hasTsx = true;
try {
  import.meta.resolve('tsx/esm/api');
} catch {
  hasTsx = false;
}

const bundle = new URL('../../dist/cli.js', import.meta.url);
if (hasTsx) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./run.ts');
} else if (existsSync(bundle)) {
  await import(bundle.href);
} else {
  process.stderr.write(
    'overdue-worker: tsx is not installed and dist/ is not built: run `npm run build`\n',
  );
  process.exit(1);
}
