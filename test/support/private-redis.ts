import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { waitFor } from './daemon';
import { freePort } from './private-postgres';

/**
 * A Redis server of one's own on a free loopback port, its files in `dir`: stopping, flushing or
 * restarting it touches nobody else's keys. Used by the fault suite (test/faults) and by
 * integration tests of Redis outages.
 */

const exec = promisify(execFile);

export class PrivateRedis {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(root: string): Promise<PrivateRedis> {
    const redis = new PrivateRedis(root, await freePort());
    await redis.startServer();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server on its port (again, after `stop`); resolves once it answers. */
  async startServer(): Promise<void> {
    await exec('redis-server', [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'yes',
      '--dir',
      this.dir,
      '--pidfile',
      path.join(this.dir, 'redis.pid'),
      '--logfile',
      path.join(this.dir, 'redis.log'),
      '--maxmemory-policy',
      'noeviction',
    ]);
    await waitFor(() => this.answers(), 10_000, 'private redis answers');
  }

  /** True when the server answers PING. */
  async answers(): Promise<boolean> {
    const probe = new Redis(this.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      return (await probe.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  }

  client(): Redis {
    const c = new Redis(this.url, { maxRetriesPerRequest: null });
    c.on('error', () => undefined);
    return c;
  }

  async flushAll(): Promise<void> {
    const c = this.client();
    try {
      await c.flushall();
    } finally {
      c.disconnect();
    }
  }

  /** SHUTDOWN NOSAVE (everything in memory is lost), then start again on the same port. */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    await this.startServer();
  }

  async stop(): Promise<void> {
    const c = new Redis(this.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
    } catch {
      // already down
    } finally {
      c.disconnect();
    }
    await waitFor(async () => !(await this.answers()), 10_000, 'private redis stopped');
  }
}
