import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { createDb } from '../../src/adapters/db/client';
import { migrate } from '../../src/adapters/db/migrate';

/**
 * A PostgreSQL server of one's own: `initdb` in a temp directory, started with `pg_ctl` on a free
 * loopback port. Restarting it, or terminating its backends, touches nobody else's connections.
 * Used by the fault suite (test/faults) and by the connection-loss integration test.
 */

const exec = promisify(execFile);
/** Binaries of the private server (initdb, pg_ctl). */
export const PG_BIN = process.env.FAULTS_PG_BIN ?? '/usr/lib/postgresql/15/bin';
/** PostgreSQL refuses to run as root: as root, its tools run as this user (FAULTS_PG_USER). */
const PG_USER = process.env.FAULTS_PG_USER ?? 'postgres';

/** Runs a PostgreSQL tool, as PG_USER when this process is root. */
function pgTool(tool: string, args: readonly string[]) {
  const file = path.join(PG_BIN, tool);
  return process.getuid?.() === 0
    ? exec('runuser', ['-u', PG_USER, '--', file, ...args])
    : exec(file, [...args]);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  /** initdb under `<root>/pg` (root must exist) and start the server. */
  static async start(root: string): Promise<PrivatePostgres> {
    const dir = path.join(root, 'pg');
    const port = await freePort();
    if (process.getuid?.() === 0) {
      mkdirSync(dir, { mode: 0o700 });
      await exec('chown', ['-R', PG_USER, root]);
    }
    await pgTool('initdb', ['-A', 'trust', '-U', 'postgres', '--no-sync', '-D', dir]);
    const pg = new PrivatePostgres(dir, port);
    await pg.startServer();
    return pg;
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  private async startServer(): Promise<void> {
    const options = [
      `-p ${this.port}`,
      `-k ${path.dirname(this.dir)}`,
      '-c listen_addresses=127.0.0.1',
      '-c max_connections=300',
      // A test instance: durability against OS crashes is not what is being tested, so no
      // fsync. Commits stay synchronous: the restart scenario stops the server like a crash of
      // PostgreSQL alone, and with synchronous_commit=off that loses acknowledged commits (WAL
      // still in the server's buffers), which a production server does not.
      '-c fsync=off',
      '-c full_page_writes=off',
    ].join(' ');
    await pgTool('pg_ctl', [
      '-D',
      this.dir,
      '-o',
      options,
      '-l',
      path.join(path.dirname(this.dir), 'pg.log'),
      '-w',
      '-t',
      '60',
      'start',
    ]);
  }

  /** Stops (immediate: like a crash, every connection cut) and starts again on the same port. */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.startServer();
  }

  async stop(): Promise<void> {
    await pgTool('pg_ctl', ['-D', this.dir, '-m', 'immediate', '-w', 'stop']).catch(
      () => undefined,
    );
  }

  /** Synchronous stop, for a process 'exit' handler (a test run killed before its cleanup). */
  stopNow(): void {
    try {
      const ctl = path.join(PG_BIN, 'pg_ctl');
      const args = ['-D', this.dir, '-m', 'immediate', 'stop'];
      if (process.getuid?.() === 0) execFileSync('runuser', ['-u', PG_USER, '--', ctl, ...args]);
      else execFileSync(ctl, args);
    } catch {
      // not running
    }
  }

  /** A fresh migrated database; returns its URL and a raw client on it. */
  async createDatabase(): Promise<{ url: string; name: string; raw: postgres.Sql }> {
    const name = `faults_${randomBytes(5).toString('hex')}`;
    const admin = postgres(this.url(), { max: 1, onnotice: () => undefined });
    try {
      await admin.unsafe(`create database "${name}"`);
    } finally {
      await admin.end({ timeout: 5 });
    }
    const url = this.url(name);
    const handle = await createDb(url, '/nonexistent-unused', { poolSize: 2 });
    try {
      await migrate(handle.db);
    } finally {
      await handle.close();
    }
    const raw = postgres(url, { max: 8, onnotice: () => undefined, connect_timeout: 5 });
    return { url, name, raw };
  }
}

/** A private server in its own temp directory; `close` stops it and removes the directory. */
export interface OwnPostgres {
  readonly pg: PrivatePostgres;
  close(): Promise<void>;
}

export async function startPrivatePostgres(prefix = 'ow-pg-'): Promise<OwnPostgres> {
  const root = mkdtempSync(path.join(tmpdir(), prefix));
  const pg = await PrivatePostgres.start(root);
  // If this process dies without `close` (a killed test run), the server goes with it.
  const emergency = () => pg.stopNow();
  process.once('exit', emergency);
  return {
    pg,
    close: async () => {
      process.removeListener('exit', emergency);
      await pg.stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
