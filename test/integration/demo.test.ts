import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteKeys, testPrefix, TEST_REDIS_URL, waitFor } from '../support/daemon';

/**
 * `npm run demo` as a newcomer runs it: embedded database, messages as files, every kind of
 * message within the compressed timeline, a clean stop on SIGTERM.
 */

const KINDS = [
  'lowbal',
  'overdue-reminder',
  'suspend',
  'resume',
  'studio-suspend',
  'release-warning',
  'release',
  'plan-quota',
  'plan-expiry',
  'payg-revert',
];

const dataDir = mkdtempSync(path.join(tmpdir(), 'ow-demo-'));
const prefix = testPrefix();

afterAll(async () => {
  rmSync(dataDir, { recursive: true, force: true });
  const redis = new Redis(TEST_REDIS_URL);
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

function kindsWritten(): Set<string> {
  const kinds = new Set<string>();
  for (const channel of ['email', 'sms']) {
    let files: string[] = [];
    try {
      files = readdirSync(path.join(dataDir, 'outbox', channel));
    } catch {
      continue;
    }
    for (const file of files) kinds.add(file.slice(0, file.indexOf('-v1-')));
  }
  return kinds;
}

describe('demo mode', () => {
  it('starts, seeds, sends one message of each kind, and stops cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo.ts'], {
      env: {
        ...process.env,
        DATA_DIR: dataDir,
        QUEUE_PREFIX: prefix,
        REDIS_URL: TEST_REDIS_URL,
        PORT: '0',
        STUDIO_RELEASE_DELAY: '25s',
        STUDIO_RELEASE_WARNING: '10s',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', () => undefined);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await waitFor(() => stdout.includes('demo is running'), 60_000, 'the demo banner');
      const banner =
        /console\s+(http:\/\/127\.0\.0\.1:\d+)\/admin\s+user (demo)\s+password (\S{8,})/.exec(
          stdout,
        );
      expect(banner).not.toBeNull();
      expect(stdout).toMatch(/dashboard\s+http:\/\/127\.0\.0\.1:\d+\/admin\/queues/);
      // The console printed answers with a seeded account's story.
      const [, base, user, password] = banner ?? [];
      const auth = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      const page = await waitFor(
        async () => {
          const res = await fetch(`${base}/admin/accounts/demo-studio`, {
            headers: { authorization: auth },
          });
          const html = await res.text();
          return res.status === 200 && html.includes('studio service') ? html : undefined;
        },
        30_000,
        'the demo-studio account page telling of its suspension',
      );
      expect(page).toContain('Main stage');
      await waitFor(
        () => KINDS.every((k) => kindsWritten().has(k)),
        90_000,
        `every kind of message (so far: ${[...kindsWritten()].join(', ')})`,
      );
      expect([...kindsWritten()].sort()).toEqual([...KINDS].sort());
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stdout).toContain('demo stopped');
  }, 180_000);
});
