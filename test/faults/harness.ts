import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { startFakeControlPlane, type FakeControlPlane } from '../support/control-plane-server';
import { createFakeTwilio, type FakeTwilio } from '../support/fake-twilio';
import { PrivatePostgres } from '../support/private-postgres';
import { PrivateRedis } from '../support/private-redis';
import { createSmtpSink, type SmtpSink } from '../support/smtp-sink';

/**
 * The fault suite's world: a private PostgreSQL and a private Redis on free loopback ports in a
 * temp directory (so restarting or flushing them never touches anyone else's), the loopback
 * sinks (control plane, SMTP, Twilio API), and real daemon processes (`node --import tsx
 * src/main.ts`, each in its own process group so `kill -9` reaches all of it; with `npx tsx` the
 * daemon runs in a child of the tsx process, and killing only that leaves the daemon running).
 */

const ROOT = path.resolve(import.meta.dirname, '../..');

/** An integer from the environment (scenario sizes), or the default. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

/** Polls `check` until truthy or the deadline (then throws naming `what`). */
export async function until<T>(
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs: number,
  what: string,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------

/** A temp directory with a private PostgreSQL and Redis; `close` removes both. */
export interface Infra {
  readonly root: string;
  readonly pg: PrivatePostgres;
  readonly redis: PrivateRedis;
  close(): Promise<void>;
}

export async function startInfra(): Promise<Infra> {
  const root = mkdtempSync(path.join(tmpdir(), 'ow-faults-'));
  const pg = await PrivatePostgres.start(root);
  const redis = await PrivateRedis.start(root);
  // If this process dies without `close` (a killed test run), the servers go with it.
  const emergency = () => {
    try {
      const pid = Number(readFileSync(path.join(root, 'redis.pid'), 'utf8'));
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // not running
    }
    pg.stopNow();
  };
  process.once('exit', emergency);
  return {
    root,
    pg,
    redis,
    close: async () => {
      process.removeListener('exit', emergency);
      await redis.stop().catch(() => undefined);
      await pg.stop();
      if (process.env.FAULTS_KEEP_TMP !== '1') rmSync(root, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------

/** One fault scenario: the titles of its block and test, and the daemon environment it runs with. */
export interface FaultScenario {
  /** The describe block's title (the scenario and its sizes). */
  readonly title: string;
  /** The one test's name (what must hold). */
  readonly test: string;
  /** Extra daemon environment for its world (durations, scan interval). */
  readonly env?: Record<string, string>;
}

/**
 * A fault scenario file's one block and test: the private PostgreSQL and Redis start before it
 * (`startInfra`), the test runs `body` in a fresh `World` on them, and afterwards the world (its
 * daemons, sinks, connections) and then the servers are closed, whether the test passed or not.
 */
export function describeFault(
  scenario: FaultScenario,
  body: (w: World, infra: Infra) => Promise<void>,
): void {
  let infra: Infra | undefined;
  let world: World | undefined;

  beforeAll(async () => {
    infra = await startInfra();
  });

  afterAll(async () => {
    await world?.close();
    await infra?.close();
  });

  describe(scenario.title, () => {
    it(scenario.test, async () => {
      if (infra === undefined) throw new Error('the fault infrastructure did not start');
      world = await World.create(infra, { env: scenario.env ?? {} });
      await body(world, infra);
    });
  });
}

// ---------------------------------------------------------------------------------------------

export interface DaemonProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** SIGKILL to the whole process group. */
  kill9(): Promise<void>;
  /** SIGTERM (graceful shutdown); SIGKILL after `timeoutMs`. Resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Process groups of the daemons spawned here: killed if this process exits with them alive. */
const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

export function spawnDaemon(
  name: string,
  env: Record<string, string>,
  logFile: string,
): DaemonProcess {
  const fd = openSync(logFile, 'a');
  // `node --import tsx` (what `npx tsx` runs, minus the wrapper process, whose exit code would
  // hide the daemon's own).
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
    // Own process group: `kill -9 -<pgid>` reaches everything it started.
    detached: true,
  });
  closeSync(fd);
  if (child.pid !== undefined) liveGroups.add(child.pid);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      if (child.pid !== undefined) liveGroups.delete(child.pid);
      resolve(signal === null ? code : -1);
    });
  });
  const group = (signal: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  return {
    name,
    child,
    exited,
    kill9: async () => {
      group('SIGKILL');
      await exited;
    },
    stop: async (timeoutMs = 30_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => group('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      // Anything left in the group (should be nothing) goes too.
      group('SIGKILL');
      return code;
    },
  };
}

// ---------------------------------------------------------------------------------------------

export interface WorldOptions {
  /** Extra daemon environment (durations, concurrency). */
  readonly env?: Record<string, string>;
}

/**
 * One scenario: a fresh database on the private server, a fresh queue prefix on the private
 * Redis, the three sinks, and the daemons it spawns.
 */
export class World {
  readonly daemons: DaemonProcess[] = [];
  private spawned = 0;
  /** Sinks closed by `stopSmtp` (what they accepted still counts). */
  private readonly oldSinks: SmtpSink[] = [];
  private smtpPort = 0;

  private constructor(
    readonly infra: Infra,
    readonly url: string,
    readonly raw: postgres.Sql,
    readonly cp: FakeControlPlane,
    public smtp: SmtpSink,
    readonly twilio: FakeTwilio,
    readonly prefix: string,
    private readonly extraEnv: Record<string, string>,
  ) {}

  static async create(infra: Infra, options: WorldOptions = {}): Promise<World> {
    const db = await infra.pg.createDatabase();
    const cp = await startFakeControlPlane();
    const smtp = await createSmtpSink({ parse: false });
    const twilio = await createFakeTwilio();
    const prefix = `{ow-faults-${randomBytes(4).toString('hex')}}`;
    return new World(infra, db.url, db.raw, cp, smtp, twilio, prefix, options.env ?? {});
  }

  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      DATABASE_URL: this.url,
      REDIS_URL: this.infra.redis.url,
      QUEUE_PREFIX: this.prefix,
      CONTROL_PLANE_URL: this.cp.url,
      CONTROL_PLANE_SECRET: this.cp.secret,
      SMTP_URL: this.smtp.url,
      MAIL_FROM: 'Billing <billing@example.com>',
      TWILIO_ACCOUNT_SID: this.twilio.accountSid,
      TWILIO_AUTH_TOKEN: this.twilio.authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_BASE_URL: this.twilio.url,
      EMAIL_RATE_LIMIT: 'off',
      SMS_RATE_LIMIT: 'off',
      QUIET_HOURS: 'off',
      PORT: '0',
      LOG_LEVEL: process.env.FAULTS_LOG_LEVEL ?? 'warn',
      SCAN_INTERVAL: '5s',
      PLAN_SCAN_INTERVAL: '1h',
      OUTBOX_POLL_INTERVAL: '500ms',
      SHUTDOWN_TIMEOUT: '10s',
      // The scenarios suspend thousands of accounts at once on purpose: no breaker.
      SUSPENSION_BREAKER: 'off',
      DATA_DIR: path.join(this.infra.root, 'data'),
      ...this.extraEnv,
      ...extra,
    };
  }

  spawn(extra: Record<string, string> = {}): DaemonProcess {
    this.spawned += 1;
    const name = `daemon-${this.spawned}`;
    const d = spawnDaemon(name, this.env(extra), this.logFile());
    this.daemons.push(d);
    return d;
  }

  /** The SMTP server goes away (connections refused) until `startSmtp`. */
  async stopSmtp(): Promise<void> {
    this.smtpPort = Number(new URL(this.smtp.url).port);
    this.oldSinks.push(this.smtp);
    await this.smtp.close();
  }

  /** A new SMTP server on the same port. */
  async startSmtp(): Promise<void> {
    this.smtp = await createSmtpSink({ parse: false, port: this.smtpPort });
  }

  /** Message-ID → times accepted, over every sink this world had. */
  smtpByMessageId(): Map<string, number> {
    const all = new Map<string, number>();
    for (const sink of [...this.oldSinks, this.smtp]) {
      for (const [id, n] of sink.byMessageId) all.set(id, (all.get(id) ?? 0) + n);
    }
    return all;
  }

  logFile(): string {
    return path.join(this.infra.root, `${this.prefix.replace(/[{}]/g, '')}.log`);
  }

  /** The daemons' stderr/stdout (warn and above), for failure messages. */
  logTail(lines = 40): string {
    try {
      return readFileSync(this.logFile(), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Queue handle on the private Redis under this world's prefix (schedulers, job lookups). */
  queue(name: string): Queue {
    // Connection options, not a client: the queue owns its connection and closes it.
    const queue = new Queue(name, {
      connection: { host: '127.0.0.1', port: this.infra.redis.port, maxRetriesPerRequest: null },
      prefix: this.prefix,
    });
    queue.on('error', () => undefined);
    return queue;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.stop(15_000)));
  }

  async close(): Promise<void> {
    await this.stopAll();
    await this.raw.end({ timeout: 5 });
    await this.cp.close();
    await this.smtp.close();
    await this.twilio.close();
  }

  // -------------------------------------------------------------------------------------------
  // Waiting and checking.

  /** Counts of outbox and notification rows by status. */
  async progress(): Promise<Record<string, number>> {
    const rows = await this.raw<{ k: string; n: string }[]>`
      select 'outbox.' || status as k, count(*) as n from outbox group by status
      union all
      select 'notifications.' || status, count(*) from notifications group by status`;
    return Object.fromEntries(rows.map((r) => [r.k, Number(r.n)]));
  }

  /**
   * True when exactly `held` streaming services carry an overdue hold and exactly `released`
   * studio instances of still-unpaid accounts are released: the enforcement end state the
   * kill, Redis-loss and three-daemon scenarios wait for.
   */
  async enforcementIs(held: number, released: number): Promise<boolean> {
    const [row] = await this.raw<{ held: string; released: string }[]>`
      select (select count(*) from services where kind = 'streaming' and overdue_hold) as held,
             (select count(*) from studio_instances i where released_at is not null
               and exists (select 1 from bills b where b.account_id = i.account_id
                            and b.status = 'unpaid')) as released`;
    return Number(row?.held) === held && Number(row?.released) === released;
  }

  /**
   * Waits until nothing is left to do: every outbox row done or failed, every notification final,
   * no release due and not done, and `extra` holds; stable over two polls.
   */
  async settle(timeoutMs: number, extra: () => Promise<boolean> = () => Promise.resolve(true)) {
    let stable = 0;
    try {
      await until(
        async () => {
          const [open] = await this.raw<{ outbox: string; notes: string; releases: string }[]>`
            select (select count(*) from outbox where status in ('pending', 'dispatched')) as outbox,
                   (select count(*) from notifications where status in ('pending', 'sending')) as notes,
                   (select count(*) from studio_instances
                     where released_at is null and release_due_at is not null
                       and release_due_at < now() - interval '1 second') as releases`;
          const idle =
            Number(open?.outbox) === 0 &&
            Number(open?.notes) === 0 &&
            Number(open?.releases) === 0 &&
            (await extra());
          stable = idle ? stable + 1 : 0;
          return stable >= 2;
        },
        timeoutMs,
        'the world to settle',
        500,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await this.diagnose()}`);
    }
  }

  /** Rows and jobs by status, and the daemons' last log lines: what a timeout message needs. */
  async diagnose(): Promise<string> {
    const jobs: Record<string, unknown> = {};
    const failed: string[] = [];
    for (const name of ['scan', 'evaluate', 'effects', 'notify-email', 'notify-sms']) {
      const q = this.queue(name);
      jobs[name] = await q.getJobCounts().catch((e: unknown) => String(e));
      for (const job of await q.getFailed(0, 4).catch(() => [])) {
        failed.push(
          `${name}/${job.id} after ${job.attemptsMade} attempts (started ${job.attemptsStarted}, stalled ${job.stalledCounter}): ${job.failedReason}`,
        );
      }
      await q.close();
    }
    const stuck = await this.raw`
      select dedupe_key, status, attempts, updated_at, left(last_error, 120) as last_error
        from notifications where status in ('pending', 'sending') order by id limit 3`.catch(
      () => [],
    );
    return [
      `rows: ${JSON.stringify(await this.progress().catch(() => ({})))}`,
      `jobs: ${JSON.stringify(jobs)}`,
      `open notifications: ${JSON.stringify(stuck)}`,
      `failed jobs: ${JSON.stringify(failed)}`,
      this.logTail(),
    ].join('\n');
  }

  /**
   * The exactly-once invariants over the sinks and the database. Returns the figures; `problems`
   * lists every violation (empty when all hold).
   */
  async check(): Promise<Invariants> {
    const problems: string[] = [];
    const outbox = await this.raw<
      {
        key: string;
        kind: string;
        status: string;
        last_error: string | null;
        payload: { op?: string; serviceId?: string; instanceId?: string };
      }[]
    >`select idempotency_key as key, kind, status, last_error, payload from outbox`;
    const notOk = outbox.filter((r) => r.status !== 'done');
    // Permanent notification failures (a scripted 5xx) end 'failed' on purpose, and a row settled
    // 'superseded' with its reason is final too (a cancelled timer, a notice no longer true when
    // its turn came: a release warning for an instance already released); count the rest.
    const settled = (r: (typeof outbox)[number]) =>
      (r.kind === 'notify' && r.status === 'failed') ||
      (r.status === 'superseded' && (r.last_error ?? '') !== '');
    const unexpected = notOk.filter((r) => !settled(r));
    if (unexpected.length > 0) {
      problems.push(
        `${unexpected.length} outbox rows not done: ${unexpected
          .slice(0, 5)
          .map((r) => `${r.key}=${r.status}(${r.last_error ?? ''})`)
          .join(', ')}`,
      );
    }

    // Control plane: every applied effect reached it, under its own key, once.
    const cpRows = outbox.filter((r) => r.kind === 'control-plane');
    const applied = new Set(
      cpRows.filter((r) => r.status === 'done' && r.last_error === null).map((r) => r.key),
    );
    const called = new Map(this.cp.calls.map((c) => [c.idempotencyKey, c]));
    const missing = [...applied].filter((k) => !called.has(k));
    if (missing.length > 0)
      problems.push(
        `${missing.length} applied effects never reached the control plane: ${missing.slice(0, 5).join(', ')}`,
      );
    const cpKeys = new Set(cpRows.map((r) => r.key));
    const stray = [...called.keys()].filter((k) => !cpKeys.has(k));
    if (stray.length > 0)
      problems.push(
        `${stray.length} control-plane calls without an outbox row: ${stray.slice(0, 5).join(', ')}`,
      );
    const mismatched = this.cp.requests.filter((r) => r.headerKey !== r.idempotencyKey);
    if (mismatched.length > 0)
      problems.push(`${mismatched.length} calls whose header key differs from the body`);
    // One effect per (op, service or instance, episode): a second key for the same thing is a double.
    const perTarget = new Map<string, number>();
    for (const c of this.cp.calls) {
      const ep = /-e(\d+)$/.exec(c.idempotencyKey)?.[1] ?? '?';
      const t = `${c.op}/${c.instanceId ?? c.serviceId}/e${ep}`;
      perTarget.set(t, (perTarget.get(t) ?? 0) + 1);
    }
    const doubled = [...perTarget].filter(([, n]) => n > 1);
    if (doubled.length > 0)
      problems.push(
        `${doubled.length} effects doubled under different keys: ${doubled
          .slice(0, 5)
          .map(([t]) => t)
          .join(', ')}`,
      );

    // The control plane's last op per service agrees with the database.
    const lastOp = new Map<string, string>();
    for (const c of this.cp.calls) if (c.op !== 'release') lastOp.set(c.serviceId, c.op);
    const services = await this.raw<
      { id: string; status: string; overdue_hold: boolean; paid: boolean }[]
    >`
      select s.id, s.status, s.overdue_hold,
             not exists (select 1 from bills b where b.account_id = s.account_id
                          and b.status = 'unpaid' and b.amount_minor > b.paid_minor) as paid
        from services s`;
    let paidSuspended = 0;
    let cpDisagrees = 0;
    for (const s of services) {
      // A released studio is gone for good (R9); it is neither suspended nor resumable.
      if (s.status === 'released') continue;
      if (s.paid && (s.overdue_hold || s.status === 'suspended')) paidSuspended += 1;
      const op = lastOp.get(s.id);
      const cpSuspended = op === 'suspend';
      if (cpSuspended !== s.overdue_hold) cpDisagrees += 1;
    }
    if (paidSuspended > 0)
      problems.push(`${paidSuspended} services of fully paid accounts still suspended`);
    if (cpDisagrees > 0)
      problems.push(
        `${cpDisagrees} services whose last control-plane op disagrees with the database`,
      );

    // Messages: every sent email reached the SMTP server, every SMS the API, none twice.
    const notes = await this.raw<{ channel: string; status: string; message_id: string | null }[]>`
      select channel, status, message_id from notifications`;
    const sentEmail = notes.filter((n) => n.channel === 'email' && n.status === 'sent');
    const sentSms = notes.filter((n) => n.channel === 'sms' && n.status === 'sent');
    const smtpIds = this.smtpByMessageId();
    const emailMissing = sentEmail.filter((n) => !smtpIds.has(n.message_id ?? ''));
    if (emailMissing.length > 0)
      problems.push(`${emailMissing.length} sent emails the SMTP server never got`);
    if (smtpIds.size !== sentEmail.length)
      problems.push(
        `SMTP got ${smtpIds.size} distinct Message-IDs for ${sentEmail.length} sent emails`,
      );
    const smsIds = new Set(this.twilio.messages.map((m) => m.sid));
    const smsMissing = sentSms.filter((n) => !smsIds.has(n.message_id ?? ''));
    if (smsMissing.length > 0) problems.push(`${smsMissing.length} sent SMS unknown to the API`);
    if (this.twilio.messages.length !== sentSms.length)
      problems.push(
        `the SMS API stored ${this.twilio.messages.length} messages for ${sentSms.length} sent SMS`,
      );
    if (this.twilio.duplicates() > 0) problems.push(`${this.twilio.duplicates()} SMS stored twice`);
    const smtpRedelivered = [...smtpIds.values()].reduce((n, v) => n + (v - 1), 0);

    return {
      problems,
      outboxRows: outbox.length,
      controlPlaneEffects: this.cp.calls.length,
      controlPlaneRequests: this.cp.requests.length,
      controlPlaneRepeats: this.cp.repeats,
      emails: smtpIds.size,
      smtpRedelivered,
      sms: this.twilio.messages.length,
      smsCreates: this.twilio.createRequests(),
      failedNotifications: notes.filter((n) => n.status === 'failed').length,
    };
  }
}

export interface Invariants {
  readonly problems: string[];
  readonly outboxRows: number;
  readonly controlPlaneEffects: number;
  readonly controlPlaneRequests: number;
  readonly controlPlaneRepeats: number;
  readonly emails: number;
  /** Same Message-ID accepted again (an SMTP send cut after the server's 250, re-sent). */
  readonly smtpRedelivered: number;
  readonly sms: number;
  readonly smsCreates: number;
  readonly failedNotifications: number;
}

// ---------------------------------------------------------------------------------------------
// Seeding, set-based (generate_series) so 20,000 accounts take a second.

export interface SeedOptions {
  readonly prefix: string;
  readonly count: number;
  /** Every n-th account also has a duration-plan studio with one instance (0: none). */
  readonly studioEvery?: number;
  /** Due instant of the bill relative to now, SQL interval (default '-1 hour': already overdue). */
  readonly dueIn?: string;
  readonly amountMinor?: number;
  /** Channel preferences (default both on). */
  readonly notifyEmail?: boolean;
  readonly notifySms?: boolean;
}

/** Phone numbers are unique across every seeding of the process (the SMS fake matches on them). */
let phoneSeq = 0;

/** Accounts `<prefix>-<n>` with email and phone, a streaming service and one overdue bill. */
export async function seedOverdue(sql: postgres.Sql, o: SeedOptions): Promise<string[]> {
  const every = o.studioEvery ?? 0;
  const amount = o.amountMinor ?? 999_999;
  const dueIn = o.dueIn ?? '-1 hour';
  const phoneBase = 2_000_000_000 + phoneSeq;
  phoneSeq += o.count;
  await sql.begin(async (tx) => {
    await tx`
      insert into accounts (id, currency, email, phone, notify_email, notify_sms)
      select ${o.prefix} || '-' || i, 'USD', ${o.prefix} || '-' || i || '@example.com',
             '+1' || (${phoneBase}::bigint + i)::text, ${o.notifyEmail ?? true}, ${o.notifySms ?? true}
        from generate_series(1, ${o.count}) as i`;
    await tx`
      insert into services (id, account_id, kind)
      select ${o.prefix} || '-' || i || '-s', ${o.prefix} || '-' || i, 'streaming'
        from generate_series(1, ${o.count}) as i`;
    if (every > 0) {
      await tx`
        insert into services (id, account_id, kind, plan_type)
        select ${o.prefix} || '-' || i || '-studio', ${o.prefix} || '-' || i, 'studio', 'duration'
          from generate_series(1, ${o.count}) as i where i % ${every} = 0`;
      await tx`
        insert into studio_instances (id, account_id, service_id, name)
        select ${o.prefix} || '-' || i || '-inst', ${o.prefix} || '-' || i,
               ${o.prefix} || '-' || i || '-studio', 'Stage ' || i
          from generate_series(1, ${o.count}) as i where i % ${every} = 0`;
    }
    await tx`
      insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
      select ${o.prefix} || '-' || i || '-b', ${o.prefix} || '-' || i, 'live', ${amount},
             now() - interval '2 days', now() + ${dueIn}::interval
        from generate_series(1, ${o.count}) as i`;
  });
  return Array.from({ length: o.count }, (_, i) => `${o.prefix}-${i + 1}`);
}

/**
 * Accounts `<prefix>-<n>` in good standing: a positive balance, a streaming service, no unpaid
 * bill. The balance scan reads them and finds nothing to do.
 */
export async function seedHealthy(sql: postgres.Sql, prefix: string, count: number): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`
      insert into accounts (id, currency, email, phone, available_balance_minor)
      select ${prefix} || '-' || i, 'USD', ${prefix} || '-' || i || '@example.com', null, 500000
        from generate_series(1, ${count}) as i`;
    await tx`
      insert into services (id, account_id, kind)
      select ${prefix} || '-' || i || '-s', ${prefix} || '-' || i, 'streaming'
        from generate_series(1, ${count}) as i`;
  });
}

/** Pays every bill of the account in full (one billing transaction). */
export async function payInFull(sql: postgres.Sql, accountId: string): Promise<void> {
  await sql`update bills set paid_minor = amount_minor, status = 'paid'
             where account_id = ${accountId} and status = 'unpaid'`;
}

/** One line of figures for the report. */
export function report(name: string, figures: Record<string, unknown>): void {
  process.stdout.write(`[faults] ${name} ${JSON.stringify(figures)}\n`);
}
