import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SETTING_NAMES } from '../../src/config';
import { createTestDatabase, type TestDatabase } from '../support/db';

/** Starts the real daemon (`src/main.ts`) as a child process with a controlled environment. */

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The test runner's environment without any of our settings, plus `env`. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const name of SETTING_NAMES) delete base[name];
  return { ...base, ...env };
}

function start(command: string, args: string[], env: Record<string, string>) {
  const child = spawn(command, args, { cwd: ROOT, env: childEnv(env), stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Run>((resolveRun) => {
    child.on('close', (code, signal) => resolveRun({ code, signal, stdout, stderr }));
  });
  return { child, done, output: () => stdout };
}

/** `npx tsx src/main.ts`, exactly as an operator would run it. */
function runNpx(env: Record<string, string>): Promise<Run> {
  return start('npx', ['tsx', 'src/main.ts'], env).done;
}

/** Node with the tsx loader directly, so signals reach the daemon without npx in between. */
function startDaemon(env: Record<string, string>) {
  return start(process.execPath, ['--import', 'tsx', 'src/main.ts'], env);
}

async function waitFor(what: () => boolean, timeoutMs: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!what()) {
    if (child.exitCode !== null) throw new Error(`daemon exited early with ${child.exitCode}`);
    if (Date.now() > until) throw new Error('timed out waiting for the daemon');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('start-up with bad configuration', () => {
  const SECRET = 'supersecretvalue';

  it('exits 1, names every bad setting and never prints a secret', async () => {
    const run = await runNpx({
      PORT: 'abc',
      CONTROL_PLANE_URL: 'https://control.example.com',
      TWILIO_AUTH_TOKEN: SECRET,
      TWILIO_ACCOUNT_SID: 'not-a-sid',
      DASHBOARD_PASSWORD: `${SECRET}-dashboard`,
      DATABASE_URL: `mysql://admin:${SECRET}@db/x`,
      LOW_BALANCE_THRESHOLD_MINOR: '99.5',
    });
    expect(run.code).toBe(1);
    for (const name of [
      'PORT',
      'CONTROL_PLANE_SECRET',
      'TWILIO_ACCOUNT_SID',
      'TWILIO_FROM',
      'DASHBOARD_USER',
      'DATABASE_URL',
      'LOW_BALANCE_THRESHOLD_MINOR',
    ]) {
      expect(run.stderr).toMatch(new RegExp(`^  - ${name} `, 'm'));
    }
    expect(run.stdout + run.stderr).not.toContain(SECRET);
    // Nothing started: no log line was written.
    expect(run.stdout).toBe('');
  });

  it('a single bad value is enough to stop it', async () => {
    const run = await startDaemon({ QUIET_HOURS: '22-8' }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('Invalid configuration (1 problem)');
    expect(run.stderr).toContain('QUIET_HOURS');
  });
});

/** Any free port and a private queue prefix: other daemons may run on this machine. */
const isolated = () => ({ PORT: '0', QUEUE_PREFIX: `{ow-startup-${process.pid}-${Date.now()}}` });

describe('start-up and shutdown', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'overdue-startup-'));
  let database: TestDatabase | undefined;
  afterAll(async () => {
    rmSync(dataDir, { recursive: true, force: true });
    await database?.drop();
  });

  async function startAndStop(env: Record<string, string>, signal: NodeJS.Signals) {
    const daemon = startDaemon({ ...isolated(), LOG_LEVEL: 'debug', ...env });
    await waitFor(() => daemon.output().includes('overdue-worker started'), 45_000, daemon.child);
    daemon.child.kill(signal);
    return daemon.done;
  }

  it('embedded PGlite: migrates, logs a redacted config, exits 0 on SIGTERM', async () => {
    const run = await startAndStop(
      {
        DATA_DIR: dataDir,
        CONTROL_PLANE_URL: 'https://control.example.com',
        CONTROL_PLANE_SECRET: 'startup-test-secret-0123456789abcdef',
        DASHBOARD_USER: 'ops',
        DASHBOARD_PASSWORD: 'startup-test-password',
      },
      'SIGTERM',
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('"driver":"pglite"');
    expect(run.stdout).toContain('"signal":"SIGTERM"');
    expect(run.stdout).toContain('"clean":true');
    expect(run.stdout).not.toContain('startup-test-secret');
    expect(run.stdout).not.toContain('startup-test-password');
    expect(run.stderr).toBe('');
  }, 60_000);

  it('PostgreSQL: migrates, masks the URL password, exits 0 on SIGINT', async () => {
    database = await createTestDatabase({ migrated: false });
    const url = new URL(database.url);
    // The local server trusts loopback connections, so a made-up password is accepted and must
    // still never be printed.
    url.password = 'pg-password-never-logged';
    const run = await startAndStop({ DATABASE_URL: url.toString() }, 'SIGINT');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('"driver":"postgres"');
    expect(run.stdout).toContain(':***@127.0.0.1');
    expect(run.stdout).not.toContain('pg-password-never-logged');
    const tables = await database.raw<{ n: number }[]>`
      select count(*)::int as n from information_schema.tables where table_schema = 'public'`;
    expect(tables[0]?.n).toBeGreaterThan(0);
  }, 60_000);

  it('Ctrl-C under npm start: two SIGINTs 2 ms apart count as one, drain and exit 0', async () => {
    const daemon = startDaemon({ ...isolated(), LOG_LEVEL: 'debug', DATA_DIR: dataDir });
    await waitFor(() => daemon.output().includes('overdue-worker started'), 45_000, daemon.child);
    // What the terminal and npm deliver: the same signal twice, milliseconds apart.
    daemon.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 2));
    daemon.child.kill('SIGINT');
    const run = await daemon.done;
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('"clean":true');
    expect(run.stdout).not.toContain('exiting now');
    expect(run.stdout.match(/"msg":"shutting down/g)).toHaveLength(1);
  }, 60_000);

  it('a second Ctrl-C seconds later forces the exit and says so', async () => {
    // A "database" that accepts connections and never answers: start-up hangs in its first
    // query, so the shutdown the first signal asks for (which waits for start-up) is still
    // under way when the second arrives.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    try {
      const daemon = startDaemon({
        ...isolated(),
        LOG_LEVEL: 'debug',
        DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/none`,
      });
      await waitFor(
        () => daemon.output().includes('starting overdue-worker'),
        45_000,
        daemon.child,
      );
      const firstAt = Date.now();
      daemon.child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 20));
      daemon.child.kill('SIGINT'); // npm's copy: still the same request
      // The log line is written asynchronously: on a loaded host it can take a while to arrive.
      await waitFor(() => daemon.output().includes('"msg":"shutting down'), 15_000, daemon.child);
      // A line seen late means the signal was handled late: the repeat window (1.5 s) is counted
      // from then, so the third signal waits past it as seen from either end.
      const seenAt = Date.now();
      const third = Math.max(firstAt + 2_000, seenAt + 1_600);
      await new Promise((r) => setTimeout(r, Math.max(0, third - Date.now())));
      expect(daemon.output()).not.toContain('exiting now');
      daemon.child.kill('SIGINT');
      const run = await daemon.done;
      expect(run.code).toBe(1);
      expect(run.stdout).toContain('second signal during shutdown: exiting now without draining');
    } finally {
      silent.close();
    }
  }, 60_000);

  it('a SIGTERM during start-up waits for start-up, then stops in order and exits 0', async () => {
    const db = await createTestDatabase({ migrated: false });
    try {
      const daemon = startDaemon({ ...isolated(), LOG_LEVEL: 'debug', DATABASE_URL: db.url });
      // The database is open, the daemon (workers, relay, listener) not started yet.
      await waitFor(() => daemon.output().includes('migrations applied'), 45_000, daemon.child);
      daemon.child.kill('SIGTERM');
      const run = await daemon.done;
      expect(run.code).toBe(0);
      const lines = run.stdout.split('\n');
      const order = [
        '"msg":"overdue-worker started"',
        '"msg":"workers stopped; in-flight jobs finished"',
        '"msg":"overdue-worker stopped"',
      ].map((msg) => lines.findIndex((line) => line.includes(msg)));
      // The log itself in the message, to read the order when this fails.
      expect(
        order.every((i) => i >= 0),
        run.stdout,
      ).toBe(true);
      expect(
        [...order].sort((a, b) => a - b),
        run.stdout,
      ).toEqual(order);
      // Closed last: nothing ran against an ended pool.
      expect(run.stdout).not.toContain('CONNECTION_ENDED');
    } finally {
      await db.drop();
    }
  }, 60_000);
});
