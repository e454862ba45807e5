#!/usr/bin/env node
// The `overdue-worker` command: loads tsx so the TypeScript sources run as they are.
import { register } from 'tsx/esm/api';

register();
const { runCli, UsageError } = await import('./index.ts');
try {
  const code = await runCli(process.argv.slice(2));
  if (code >= 0) process.exit(code);
} catch (error) {
  process.stderr.write(
    `overdue-worker: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(error instanceof UsageError ? 2 : 1);
}
