/**
 * One loopback sink of the notification benchmark in a process of its own, so that the sinks'
 * CPU (SMTP parsing, the fake SMS API's HTTP server) is not counted against the sender's event
 * loop: `node --import tsx test/bench/sink-child.ts smtp|sms`, started by `startSinkChild`
 * (notify-bench.ts) with an IPC channel. It answers `stats` requests with what it accepted and
 * the duplicates it saw, and exits when asked to or when its parent goes away.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createFakeTwilio } from '../support/fake-twilio';
import { createSmtpSink } from '../support/smtp-sink';

export type SinkKind = 'smtp' | 'sms';

export interface SinkReady {
  readonly type: 'ready';
  readonly url: string;
  /** The fake SMS API's credentials (sms only). */
  readonly accountSid?: string;
  readonly authToken?: string;
}

export interface SinkStats {
  /** Messages accepted (SMTP) or stored (SMS). */
  readonly accepted: number;
  /** Same Message-ID accepted twice (SMTP); same number and body stored twice (SMS). */
  readonly duplicates: number;
}

type Request = { readonly type: 'stats'; readonly id: number } | { readonly type: 'close' };
type Reply = SinkReady | ({ readonly type: 'stats'; readonly id: number } & SinkStats);

export interface SinkChild {
  readonly ready: SinkReady;
  readonly pid: number;
  stats(): Promise<SinkStats>;
  close(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

/** Starts a sink in its own process and resolves when it listens. */
export async function startSinkChild(kind: SinkKind): Promise<SinkChild> {
  const child: ChildProcess = fork(SELF, [kind], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, (s: SinkStats) => void>();
  let nextId = 0;
  const ready = await new Promise<SinkReady>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${kind} sink exited with ${code}`)));
    child.on('message', (m: Reply) => {
      if (m.type === 'ready') resolve(m);
      else pending.get(m.id)?.({ accepted: m.accepted, duplicates: m.duplicates });
    });
  });
  child.removeAllListeners('exit');
  return {
    ready,
    pid: child.pid ?? 0,
    stats: () =>
      new Promise<SinkStats>((resolve) => {
        nextId += 1;
        pending.set(nextId, resolve);
        child.send({ type: 'stats', id: nextId } satisfies Request);
      }),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.send({ type: 'close' } satisfies Request);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function main(kind: SinkKind): Promise<void> {
  const send = (m: Reply) => process.send?.(m);
  let stats: () => SinkStats;
  let close: () => Promise<void>;
  if (kind === 'smtp') {
    const sink = await createSmtpSink({ parse: false });
    stats = () => ({ accepted: sink.accepted(), duplicates: sink.duplicates() });
    close = () => sink.close();
    send({ type: 'ready', url: sink.url });
  } else {
    const fake = await createFakeTwilio();
    stats = () => ({ accepted: fake.messages.length, duplicates: fake.duplicates() });
    close = () => fake.close();
    send({ type: 'ready', url: fake.url, accountSid: fake.accountSid, authToken: fake.authToken });
  }
  const stop = () => {
    void close().finally(() => process.exit(0));
  };
  process.on('message', (m: Request) => {
    if (m.type === 'stats') send({ type: 'stats', id: m.id, ...stats() });
    else stop();
  });
  // The benchmark died or was killed: do not outlive it.
  process.on('disconnect', stop);
}

if (process.argv[1] === SELF) {
  const kind = process.argv[2];
  if (kind !== 'smtp' && kind !== 'sms') {
    console.error('usage: sink-child.ts smtp|sms');
    process.exit(2);
  }
  main(kind).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
