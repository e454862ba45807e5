import type { Job } from 'bullmq';
import type { Clock } from '../src/adapters/clock/clock';
import type { ControlPlane } from '../src/adapters/control-plane/control-plane';
import type { Db } from '../src/adapters/db/client';
import type { OutboxRelay } from '../src/adapters/queue/outbox-relay';
import type { QueueSet } from '../src/adapters/queue/queues';
import type { Config } from '../src/config';
import type { Logger } from '../src/logger';

/** What every job handler may use. Built once by the daemon (src/daemon.ts). */
export interface JobContext {
  readonly db: Db;
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly queues: QueueSet;
  readonly relay: OutboxRelay;
  readonly controlPlane: ControlPlane;
}

/**
 * A job handler: parse the payload, load, decide, apply. `log` is a child logger already bound
 * to the job id (handlers add account id and idempotency key).
 */
export type JobHandler = (job: Job, ctx: JobContext, log: Logger) => Promise<unknown>;

/** Who an evaluation is attributed to in the event log: an operator by name, else the daemon. */
export function actorOf(origin: string): string {
  return origin.startsWith('operator') ? origin : 'daemon';
}
