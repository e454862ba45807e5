#!/usr/bin/env node
import { describeError } from '../describe-error';
import { runCli, UsageError } from './index';

/**
 * Runs the `overdue-worker` command with this process's arguments and exits with its code (2 for
 * a usage error, 1 for any other failure). `start` keeps the process running: the daemon exits on
 * its own. Entry of the built CLI (dist/cli.js); bin.mjs runs it from the sources through tsx.
 */
try {
  const code = await runCli(process.argv.slice(2));
  if (code >= 0) process.exit(code);
} catch (error) {
  // Usage errors are ours to word; anything else is described (never a query's parameters).
  const text = error instanceof UsageError ? error.message : describeError(error);
  process.stderr.write(`overdue-worker: ${text}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
}
