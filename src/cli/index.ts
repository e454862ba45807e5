import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import pino from 'pino';
import { systemClock } from '../adapters/clock/clock';
import { loadAccountSnapshot } from '../adapters/db/account-snapshot';
import { createDb, dbOptions, type DbHandle } from '../adapters/db/client';
import {
  liftPause,
  pauseKindProblem,
  readControlState,
  setEnforcementMode,
  setPause,
  shadowReport,
  type PauseKind,
} from '../adapters/db/control-store';
import { readBreaker, resetBreaker, settleHeld } from '../adapters/db/breaker-store';
import { evaluateAccount } from '../adapters/db/evaluation';
import { countAccounts, whatIf, WHAT_IF_PAGE, type WhatIfSample } from '../adapters/db/what-if';
import { ENFORCEMENT_MODES } from '../domain/modes';
import { PAUSE_KINDS } from '../adapters/db/schema';
import { migrateDatabase } from '../adapters/db/migrate';
import { balanceCandidates, planCandidates } from '../adapters/db/scan-queries';
import { assertRedisAnswers, createRedis } from '../adapters/queue/connection';
import { OutboxRelay } from '../adapters/queue/outbox-relay';
import {
  enqueueFreshScans,
  evaluationBatches,
  evaluationOptions,
  QueueSet,
} from '../adapters/queue/queues';
import { parseConfigOrExit, parseDuration, windowStart, type Config } from '../config';
import { proposedRules } from '../config-overrides';
import { describeDecision, payEverything, simulate, type ScriptedEvent } from '../domain/simulate';
import { DAY, HOUR } from '../domain/time';

/**
 * The `overdue-worker` command. A composition root like src/main.ts: it parses the environment
 * once and passes the configuration down.
 *
 *   overdue-worker start                    run the daemon (same as npm start)
 *   overdue-worker migrate                  apply the database migrations
 *   overdue-worker scan [--plans]           select candidates now and enqueue their evaluations
 *   overdue-worker evaluate <account>       evaluate one account now and print the decisions
 *   overdue-worker simulate <account> [--days N] [--step 1h] [--pay-at ISO]
 *                                           replay the policy for one account with a fake clock
 *   overdue-worker mode [enforce|shadow|off --reason "…"]
 *                                           print or set the enforcement mode
 *   overdue-worker pause|unpause suspensions|releases|messages [--reason "…"]
 *                                           hold a kind of effect, or let it go again
 *   overdue-worker what-if --set NAME=value… [--at ISO]
 *                                           the fleet's decisions under proposed policy settings
 *   overdue-worker shadow-report [--since 24h]
 *                                           what shadow mode would have done
 *   overdue-worker breaker [approve|reject (--all | KEY…) | reset] [--reason "…"]
 *                                           the mass-suspension breaker and what it holds
 */

const USAGE = `usage: overdue-worker <command> [options]

commands:
  start                       run the daemon
  migrate                     apply database migrations
  scan [--plans]              enqueue evaluations of every candidate account now
  evaluate <account>          evaluate one account now and print its decisions
  simulate <account>          print the timeline the policy would produce for an account
      --days N                span to replay (default 3)
      --step DURATION         evaluate at least this often, like the scans (default 1h)
      --pay-at ISO            pay every bill at this instant during the replay
  mode                        print the enforcement mode
  mode <enforce|shadow|off>   set it for every daemon (recorded with who and why)
      --reason TEXT           why (required)
  pause <kind> --reason TEXT  hold suspensions, releases or messages (resumes are never paused)
  unpause <kind>              lift the pause: the held effects go out, re-checked
  what-if                     how many accounts would be decided differently under proposed
                              policy settings (read-only; nothing is written)
      --set NAME=value        a policy setting to change (repeat for several)
      --at ISO                evaluate at this instant (default now)
  shadow-report               what shadow mode would have done, by decision kind
      --since DURATION|ISO    window (default 24h)
  breaker                     the mass-suspension breaker: tripped or not, what it holds
  breaker approve --all|KEY…  carry out held suspensions and studio releases (re-checked)
  breaker reject --all|KEY…   never carry them out in their episode; --reason required
  breaker reset --reason TEXT close a tripped breaker (held decisions stay held)
`;

class UsageError extends Error {}

async function openDb(config: Config): Promise<DbHandle> {
  await migrateDatabase(config.databaseUrl, config.dataDir);
  return createDb(config.databaseUrl, config.dataDir, {
    ...dbOptions(config),
    poolSize: 2,
    applicationName: 'overdue-worker-cli',
  });
}

const quietLogger = pino({ level: 'silent' });

async function withQueues<T>(config: Config, fn: (queues: QueueSet) => Promise<T>): Promise<T> {
  await assertRedisAnswers(config.redisUrl, 3_000);
  const redis = createRedis(config.redisUrl, 'producer', quietLogger);
  const queues = new QueueSet(redis, config.queuePrefix);
  try {
    return await fn(queues);
  } finally {
    await queues.close();
    await redis.quit();
  }
}

async function scan(config: Config, plans: boolean, out: NodeJS.WriteStream): Promise<string> {
  const database = await openDb(config);
  try {
    return await withQueues(config, async (queues) => {
      const now = systemClock.now();
      const select = plans ? planCandidates : balanceCandidates;
      // A bar needs a total: count the candidates first, only when someone is watching.
      let bar: SingleBar | null = null;
      if (out.isTTY) {
        let total = 0;
        let cursor = '';
        for (;;) {
          const page = await select(database.db, cursor, 50_000, now, config.rules);
          total += page.length;
          if (page.length < 50_000) break;
          cursor = page[page.length - 1] ?? cursor;
        }
        bar = new SingleBar({ format: 'scan |{bar}| {value}/{total} candidates', stream: out });
        bar.start(total, 0);
      }
      let cursor = '';
      let done = 0;
      for (;;) {
        const page = await select(database.db, cursor, config.scanPageSize, now, config.rules);
        if (page.length === 0) break;
        await queues.addBulk(
          'evaluate-batch',
          evaluationBatches(page, config.evaluateBatchSize, 'operator:cli'),
        );
        done += page.length;
        bar?.update(done);
        cursor = page[page.length - 1] ?? cursor;
        if (page.length < config.scanPageSize) break;
      }
      bar?.stop();
      return `${done} ${plans ? 'plan' : 'balance'} candidates enqueued for evaluation`;
    });
  } finally {
    await database.close();
  }
}

async function evaluate(config: Config, accountId: string): Promise<string> {
  const database = await openDb(config);
  try {
    const outcome = await evaluateAccount(
      database.db,
      accountId,
      systemClock,
      config.rules,
      'operator:cli',
    );
    if (outcome.status === 'not-found') throw new UsageError(`no account ${accountId}`);
    if (outcome.status === 'invalid') return `account ${accountId} skipped: ${outcome.reason}`;
    if (outcome.status === 'off') return `enforcement is off: account ${accountId} not evaluated`;
    if (outcome.status === 'shadow') {
      return [
        `account ${accountId} (shadow mode, nothing done): ${outcome.decisions.length} decisions`,
        ...outcome.decisions.map((d) => `  ${d.kind.padEnd(22)} ${describeDecision(d)}`),
      ].join('\n');
    }
    const lines = outcome.decisions.map((d) => `  ${d.kind.padEnd(22)} ${describeDecision(d)}`);
    let relayed = 'effects left in the outbox for the daemon (Redis not reachable)';
    try {
      relayed = await withQueues(config, async (queues) => {
        const relay = new OutboxRelay(database.db, queues, systemClock, quietLogger);
        return `${await relay.drain()} outbox rows relayed to the queues`;
      });
    } catch {
      // The daemon's relay will pick the rows up.
    }
    return [
      `account ${accountId}: ${outcome.decisions.length} decisions, ${outcome.newEffects} new effects`,
      ...lines,
      relayed,
    ].join('\n');
  } finally {
    await database.close();
  }
}

async function simulateCommand(
  config: Config,
  accountId: string,
  options: { days?: string; step?: string; 'pay-at'?: string },
): Promise<string> {
  const days = Number(options.days ?? '3');
  if (!Number.isFinite(days) || days <= 0 || days > 366) {
    throw new UsageError('--days must be a number of days from 1 to 366');
  }
  const stepMs = options.step === undefined ? HOUR : parseDuration(options.step);
  if (stepMs === undefined || stepMs < 1_000) {
    throw new UsageError('--step must be a duration of at least 1s, e.g. 15m or 1h');
  }
  const events: ScriptedEvent[] = [];
  if (options['pay-at'] !== undefined) {
    const at = new Date(options['pay-at']);
    if (Number.isNaN(at.getTime())) throw new UsageError('--pay-at must be an ISO instant');
    events.push({ at, label: 'payment', apply: payEverything });
  }
  const database = await openDb(config);
  try {
    const from = systemClock.now();
    // The snapshot is read as an evaluation reads it (row lock, one transaction); nothing is written.
    const loaded = await database.db.transaction((tx) =>
      loadAccountSnapshot(tx, accountId, from, {
        revertNoticeWindowMs: config.rules.revertNoticeWindowMs,
      }),
    );
    if (!loaded.ok) throw new UsageError(`account ${accountId}: ${loaded.reason}`);
    const result = simulate(loaded.snapshot, config.rules, {
      from,
      to: new Date(from.getTime() + days * DAY),
      stepMs,
      events,
    });
    const lines = result.timeline.map(
      (e) => `${e.at.toISOString()}  ${e.decision.kind.padEnd(22)} ${describeDecision(e.decision)}`,
    );
    for (const event of events) lines.push(`${event.at.toISOString()}  (scripted ${event.label})`);
    lines.sort();
    return [
      `replay of ${accountId} from ${from.toISOString()} for ${days} day(s), step ${options.step ?? '1h'}`,
      ...(lines.length > 0 ? lines : ['(nothing would happen)']),
      result.truncated ? '(stopped early: too many steps)' : '',
    ]
      .filter(Boolean)
      .join('\n');
  } finally {
    await database.close();
  }
}

/** Who the event log names for a change made from this command line. */
function cliActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (a container's arbitrary uid): the actor is still the CLI.
  }
  return `operator:cli-${user}`.slice(0, 80);
}

async function modeCommand(
  config: Config,
  mode: string | undefined,
  reason: string | undefined,
): Promise<string> {
  const database = await openDb(config);
  try {
    if (mode === undefined) {
      const s = await readControlState(database.db);
      return `enforcement mode: ${s.mode} (set by ${s.changedBy} at ${s.changedAt.toISOString()}${s.reason !== null ? `: ${s.reason}` : ''})`;
    }
    const wanted = ENFORCEMENT_MODES.find((m) => m === mode);
    if (wanted === undefined) {
      throw new UsageError(`mode must be one of ${ENFORCEMENT_MODES.join(', ')} (got ${mode})`);
    }
    if (reason === undefined || reason.trim() === '') {
      throw new UsageError('mode needs --reason "why", for the event log');
    }
    checkReasonLength(reason);
    const actor = cliActor();
    const result = await setEnforcementMode(database.db, { mode: wanted, actor, reason });
    if (result.kind !== 'changed') return `enforcement mode already ${result.state.mode}`;
    let after = '';
    if (wanted === 'enforce') {
      try {
        await withQueues(config, (queues) => enqueueFreshScans(queues, actor));
        after = '; a fresh scan of every account is queued';
      } catch {
        after = '; Redis not reachable: the next scheduled scan evaluates the accounts afresh';
      }
    }
    return `enforcement mode: ${result.from} -> ${wanted}${after}`;
  } finally {
    await database.close();
  }
}

async function shadowReportCommand(config: Config, since: string): Promise<string> {
  const start = windowStart(since, new Date());
  if (start === undefined) {
    throw new UsageError('--since must be a duration (24h, 7d) or an ISO 8601 instant');
  }
  const database = await openDb(config);
  try {
    const state = await readControlState(database.db);
    const report = await shadowReport(database.db, start, 5);
    const lines = report.kinds.map(
      (k) =>
        `  ${k.decision.padEnd(22)} ${String(k.accounts).padStart(8)} accounts ${String(k.events).padStart(8)} actions  e.g. ${k.sample.join(', ')}`,
    );
    return [
      `shadow report since ${start.toISOString()} (mode now: ${state.mode})`,
      ...(lines.length > 0 ? lines : ['  (no shadow decisions in this window)']),
    ].join('\n');
  } finally {
    await database.close();
  }
}

async function pauseCommand(
  config: Config,
  command: 'pause' | 'unpause',
  kind: string | undefined,
  reason: string | undefined,
): Promise<string> {
  if (kind === undefined) throw new UsageError(`${command} needs one of ${PAUSE_KINDS.join(', ')}`);
  const problem = pauseKindProblem(kind);
  if (problem !== null) throw new UsageError(`${command} ${kind}: ${problem}`);
  const pauseKind = kind as PauseKind;
  if (command === 'pause' && (reason === undefined || reason.trim() === '')) {
    throw new UsageError('pause needs --reason "why", for the event log');
  }
  checkReasonLength(reason);
  const database = await openDb(config);
  try {
    const actor = cliActor();
    if (command === 'pause') {
      const done = await setPause(database.db, { kind: pauseKind, actor, reason: reason ?? '' });
      return done ? `${pauseKind} paused` : `${pauseKind} were paused already`;
    }
    const lifted = await liftPause(database.db, { kind: pauseKind, actor, reason: reason ?? null });
    return lifted ? `${pauseKind} pause lifted` : `${pauseKind} were not paused`;
  } finally {
    await database.close();
  }
}

/** The event log keeps reasons of up to 500 characters (as the API's). */
function checkReasonLength(reason: string | undefined): void {
  if (reason !== undefined && reason.length > 500) {
    throw new UsageError(`--reason must be at most 500 characters (got ${reason.length})`);
  }
}

async function breakerCommand(
  config: Config,
  args: readonly string[],
  all: boolean,
  reason: string | undefined,
): Promise<string> {
  const [action, ...keys] = args;
  checkReasonLength(reason);
  const database = await openDb(config);
  try {
    const db = database.db;
    const actor = cliActor();
    switch (action) {
      case undefined: {
        const b = await readBreaker(db, { limit: 20 });
        const state = !b.enabled
          ? 'off'
          : b.tripped
            ? `TRIPPED at ${b.trippedAt?.toISOString()}`
            : 'closed';
        return [
          `breaker: ${state}; ${b.admitted} of ${b.limit} suspensions admitted within ${b.limits.windowMs / 60_000} min; ${b.heldCount} held`,
          ...b.held.map(
            (h) =>
              `  ${h.kind.padEnd(8)} ${h.accountId.padEnd(24)} ${h.key}  (${h.decidedAt.toISOString()})`,
          ),
          ...(b.heldCount > b.held.length ? [`  … and ${b.heldCount - b.held.length} more`] : []),
        ].join('\n');
      }
      case 'approve':
      case 'reject': {
        if (all === keys.length > 0) {
          throw new UsageError(
            `breaker ${action} needs either --all or the keys of held decisions`,
          );
        }
        if (action === 'reject' && (reason === undefined || reason.trim() === '')) {
          throw new UsageError('breaker reject needs --reason "why", for the event log');
        }
        const selection = all ? { all: true as const } : { keys };
        const to = action === 'approve' ? 'approved' : 'rejected';
        const settled = await settleHeld(db, to, selection, actor, reason ?? null);
        let after = '';
        if (action === 'approve' && settled.length > 0) {
          const accounts = [...new Set(settled.map((s) => s.accountId))];
          try {
            await withQueues(config, (queues) =>
              queues.addBulk(
                'evaluate-account',
                accounts.map((accountId) => ({
                  data: { accountId, origin: actor },
                  opts: evaluationOptions(accountId, 'event'),
                })),
              ),
            );
            after = `; ${accounts.length} accounts queued for evaluation`;
          } catch {
            after = '; Redis not reachable: the next scans evaluate the accounts';
          }
        }
        return `${settled.length} held decisions ${to}${after}`;
      }
      case 'reset': {
        if (reason === undefined || reason.trim() === '') {
          throw new UsageError('breaker reset needs --reason "why", for the event log');
        }
        return (await resetBreaker(db, actor, reason))
          ? 'breaker reset: new suspensions are admitted again, counted from now'
          : 'breaker was not tripped';
      }
      default:
        throw new UsageError(`breaker: unknown action ${action} (approve, reject or reset)`);
    }
  } finally {
    await database.close();
  }
}

async function whatIfCommand(
  config: Config,
  sets: readonly string[],
  at: string | undefined,
  out: NodeJS.WriteStream,
): Promise<string> {
  const proposed = proposedRules(config, sets);
  if (!proposed.ok) {
    throw new UsageError(
      `what-if: ${proposed.problems.map((p) => `${p.name} ${p.message}`).join('; ')}`,
    );
  }
  const instant = at === undefined ? systemClock.now() : new Date(at);
  if (Number.isNaN(instant.getTime()) || (at !== undefined && !/[zZ]|[+-]\d\d:?\d\d$/.test(at))) {
    throw new UsageError('--at must be an ISO 8601 instant with an offset');
  }
  const database = await openDb(config);
  try {
    let bar: SingleBar | null = null;
    if (out.isTTY) {
      bar = new SingleBar({ format: 'what-if |{bar}| {value}/{total} accounts', stream: out });
      bar.start(await countAccounts(database.db), 0);
    }
    const started = Date.now();
    const report = await whatIf(database.db, config.rules, proposed.rules, {
      at: instant,
      pageSize: WHAT_IF_PAGE,
      sample: 5,
      onProgress: (done) => bar?.update(done),
    });
    bar?.stop();
    const seconds = (Date.now() - started) / 1000;
    const money = (s: WhatIfSample) =>
      `${s.accountId} (${s.currency} overdue ${s.overdueMinor}, balance ${s.availableBalanceMinor})`;
    const lines = report.kinds.flatMap((k) => [
      `  ${k.decision.padEnd(22)} +${k.more} -${k.fewer}`,
      ...(k.sampleMore.length > 0 ? [`      more: ${k.sampleMore.map(money).join(', ')}`] : []),
      ...(k.sampleFewer.length > 0 ? [`      fewer: ${k.sampleFewer.map(money).join(', ')}`] : []),
    ]);
    return [
      `what-if at ${instant.toISOString()}: ${Object.entries(proposed.changes)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
      `${report.accounts} accounts read in ${seconds.toFixed(1)} s (${Math.round(report.accounts / Math.max(seconds, 0.001))}/s), ${report.changed} would be decided differently, ${report.invalid} invalid; nothing written`,
      ...(lines.length > 0 ? lines : ['  (no decision would change)']),
    ].join('\n');
  } finally {
    await database.close();
  }
}

export async function runCli(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      plans: { type: 'boolean' },
      days: { type: 'string' },
      step: { type: 'string' },
      'pay-at': { type: 'string' },
      reason: { type: 'string' },
      since: { type: 'string' },
      set: { type: 'string', multiple: true },
      at: { type: 'string' },
      all: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (command === undefined || command === 'help' || values.help) {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'start') {
    await import('../main');
    return -1; // the daemon keeps running; main.ts exits on its own
  }
  const config = parseConfigOrExit(process.env);
  const account = () => {
    const id = positionals[0];
    if (id === undefined) throw new UsageError(`${command} needs an account id`);
    return id;
  };
  let output: string;
  switch (command) {
    case 'migrate': {
      await migrateDatabase(config.databaseUrl, config.dataDir, (m) =>
        process.stderr.write(`${m}\n`),
      );
      output = `migrations applied (${config.databaseUrl === null ? 'pglite' : 'postgres'})`;
      break;
    }
    case 'scan':
      output = await scan(config, values.plans === true, process.stderr);
      break;
    case 'evaluate':
      output = await evaluate(config, account());
      break;
    case 'simulate':
      output = await simulateCommand(config, account(), values);
      break;
    case 'mode':
      output = await modeCommand(config, positionals[0], values.reason);
      break;
    case 'pause':
    case 'unpause':
      output = await pauseCommand(config, command, positionals[0], values.reason);
      break;
    case 'what-if':
      output = await whatIfCommand(config, values.set ?? [], values.at, process.stderr);
      break;
    case 'shadow-report':
      output = await shadowReportCommand(config, values.since ?? '24h');
      break;
    case 'breaker':
      output = await breakerCommand(config, positionals, values.all === true, values.reason);
      break;
    default:
      throw new UsageError(`unknown command ${command}\n\n${USAGE}`);
  }
  process.stdout.write(`${output}\n`);
  return 0;
}

export { UsageError };
