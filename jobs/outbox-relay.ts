import { parsePayload } from '../src/adapters/queue/catalog';
import type { JobHandler } from './context';

/** Relays pending outbox rows now and restores jobs Redis lost (also runs on its own timer). */
export const outboxRelayJob: JobHandler = async (job, ctx, log) => {
  parsePayload('outbox-relay', job.data);
  const relayed = await ctx.relay.drain();
  const restored = await ctx.relay.reconcile();
  log.info({ relayed, restored }, 'outbox relayed');
  return { relayed, restored };
};
