import type { Db } from './client';
import { Coalescer } from './coalesce';
import { persistWithin } from './persist-within';
import {
  claimNotifications,
  loadForSendMany,
  markSentMany,
  type Claim,
  type ClaimRequest,
  type SendState,
  type SentRecord,
} from './notification-store';
import { applyEarlyCallbacks } from './sms-callback-store';

/**
 * The send path's hot statements, shared by the concurrent send jobs of one process: each job
 * asks for its own message, and the requests of jobs running at the same time go out as one
 * statement each (Coalescer): the load (row, contact, re-check), the claim under a lease, the
 * record sent with its outbox row, and the early SMS callbacks. So a message costs a share of
 * four statements, not four statements, and the per-statement round trips and CPU are paid once
 * per batch. Each job still makes its own decisions and is settled on its own.
 */
export interface NotificationBatches {
  /** The message with this dedupe key and what the sender needs of it; null when none. */
  load(key: string): Promise<SendState | null>;
  /** Claims the row under a lease (notification-store's claimNotifications). */
  claim(request: ClaimRequest): Promise<Exclude<Claim, { kind: 'changed' }>>;
  /**
   * Records a message the provider accepted as sent under the claim (with its outbox row),
   * retried while the database is away until `deadline` (epoch ms; the attempt's lease); then,
   * for an SMS, applies the delivery callbacks that came before the row carried its message id.
   * False when the attempt no longer held the row.
   */
  recordSent(record: SentRecord, channel: 'email' | 'sms', deadline: number): Promise<boolean>;
}

/** Most messages per statement (the rest go in the next one). */
const MAX_BATCH = 256;

export function createNotificationBatches(
  db: Db,
  lowBalanceThresholdMinor: number,
): NotificationBatches {
  const loads = new Coalescer<string, SendState | null>(
    (keys) => loadForSendMany(db, keys, lowBalanceThresholdMinor),
    { maxBatch: MAX_BATCH },
  );
  const claims = new Coalescer<ClaimRequest, Claim>(
    (requests) => claimNotifications(db, requests),
    { maxBatch: MAX_BATCH },
  );
  const marks = new Coalescer<SentRecord, boolean>((records) => markSentMany(db, records), {
    maxBatch: MAX_BATCH,
  });
  const early = new Coalescer<{ provider: string; messageId: string }, null>(
    async (items) => {
      const byProvider = new Map<string, string[]>();
      for (const i of items)
        byProvider.set(i.provider, [...(byProvider.get(i.provider) ?? []), i.messageId]);
      for (const [provider, ids] of byProvider) await applyEarlyCallbacks(db, provider, ids);
      return items.map(() => null);
    },
    { maxBatch: MAX_BATCH },
  );
  return {
    load: (key) => loads.load(key),
    claim: async (request) => {
      const claim = await claims.load(request);
      // Released between the lock and the update, or asked twice at once: a later attempt takes it.
      if (claim.kind === 'changed') {
        throw new Error(`notification ${request.id} changed while being claimed; retrying`);
      }
      return claim;
    },
    recordSent: async (record, channel, deadline) => {
      const recorded = await persistWithin(deadline, () => marks.load(record));
      if (recorded && channel === 'sms') {
        await early.load({ provider: record.provider, messageId: record.messageId });
      }
      return recorded;
    },
  };
}
