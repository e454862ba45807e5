import type { Minor } from './money';
import type { EnforcementState } from './snapshot';

/**
 * Is a queued notice still true when it is about to go out? A message can wait for hours (SMS
 * quiet hours, a rate limit, a provider outage) while the account changes: the customer pays,
 * tops up, or a release is cancelled. A notice whose condition no longer holds is superseded
 * (settled with the reason, never sent). Pure: the caller loads the account's state and the
 * notice's siblings (the account's other notices of the same episode on the same channel) in one
 * query at send time.
 *
 * Rules:
 * - overdue reminder: its episode is still open and the account not suspended (the reminder says
 *   the services run under protection; the suspension notice takes over);
 * - suspension notice (live or studio): its episode is still open;
 * - studio release warning: its episode is open and the instance's release still pending;
 * - low-balance reminder: the balance is still below the account's threshold;
 * - resume notice: skipped when the suspension notice of its episode on the same channel was
 *   superseded and none was sent there (the customer never learned of the suspension), and when
 *   a later episode has suspended the account again;
 * - others (studio released, plan alerts) are facts and always go.
 * Order: a notice never overtakes an earlier notice of the same episode on the same channel.
 * An earlier one still pending that is no longer true is superseded at once; one that is still
 * true, or being sent, holds the later one back until it is settled.
 * Rows written before notices carried their episode (`params.episodeSeq`) are not re-checked
 * against episodes.
 */

export interface QueuedNotice {
  readonly id: number;
  readonly dedupeKey: string;
  readonly template: string;
  readonly status: string;
  /** Episode the notice belongs to (params.episodeSeq); null when not recorded. */
  readonly episodeSeq: number | null;
  /** Studio instance a release warning is about (params.instanceId); null otherwise. */
  readonly instanceId: string | null;
}

export interface InstanceReleaseState {
  readonly releasedAt: Date | null;
  readonly releaseDueAt: Date | null;
  readonly releaseEpisodeSeq: number | null;
}

export interface NoticeAccountState {
  /** The account's latest episode, and whether it is still open. */
  readonly episodeSeq: number;
  readonly episodeOpen: boolean;
  readonly enforcementState: EnforcementState;
  readonly availableBalanceMinor: Minor;
  /** The account's low-balance threshold, the default applied. */
  readonly lowBalanceThresholdMinor: Minor;
  /** Release state of the studio instances the notices name, by instance id. */
  readonly instances: ReadonlyMap<string, InstanceReleaseState>;
}

export type SendVerdict =
  | { readonly kind: 'send' }
  | { readonly kind: 'supersede'; readonly reason: string }
  | { readonly kind: 'hold'; readonly reason: string };

export interface NoticeCheck {
  readonly verdict: SendVerdict;
  /** Pending notices of the same episode and channel that are no longer true: settle them too. */
  readonly supersedeOthers: readonly { readonly notice: QueuedNotice; readonly reason: string }[];
}

const SUSPENSION_TEMPLATES = new Set(['suspended', 'studio-suspended']);
/** Statuses in which a message reached, or may have reached, the provider. */
const HANDED_OVER = new Set(['sending', 'sent', 'delivered', 'undeliverable']);

/** Why `notice` is no longer true in `state`, or null while it still is (resume: see below). */
export function noLongerTrue(notice: QueuedNotice, state: NoticeAccountState): string | null {
  const seq = notice.episodeSeq;
  const episodeEnded =
    seq !== null && !(state.episodeOpen && state.episodeSeq === seq)
      ? `overdue episode ${seq} ended before it was sent`
      : null;
  switch (notice.template) {
    case 'overdue-reminder':
      if (episodeEnded !== null) return episodeEnded;
      if (seq !== null && state.enforcementState === 'suspended') {
        return `the account was suspended in episode ${seq} before it was sent; the suspension notice took over`;
      }
      return null;
    case 'suspended':
    case 'studio-suspended':
      return episodeEnded;
    case 'studio-release-warning': {
      if (episodeEnded !== null) return `release cancelled: ${episodeEnded}`;
      if (notice.instanceId === null) return null;
      const inst = state.instances.get(notice.instanceId);
      if (inst === undefined) return `studio instance ${notice.instanceId} no longer exists`;
      if (inst.releasedAt !== null) {
        return `studio instance ${notice.instanceId} was released before the warning went out; the release notice tells it`;
      }
      if (inst.releaseDueAt === null || inst.releaseEpisodeSeq !== seq) {
        return `release of studio instance ${notice.instanceId} was cancelled`;
      }
      return null;
    }
    case 'low-balance':
      return state.availableBalanceMinor >= state.lowBalanceThresholdMinor
        ? `balance ${state.availableBalanceMinor} is no longer below the threshold ${state.lowBalanceThresholdMinor}`
        : null;
    case 'resumed':
      if (
        seq !== null &&
        state.episodeSeq > seq &&
        state.episodeOpen &&
        state.enforcementState === 'suspended'
      ) {
        return `suspended again in episode ${state.episodeSeq} before it was sent`;
      }
      return null;
    default:
      return null;
  }
}

/**
 * The verdict for `notice` given its siblings: the account's other notices of the same episode
 * on the same channel, in any status (an empty list for notices without an episode).
 */
export function checkNotice(
  notice: QueuedNotice,
  siblings: readonly QueuedNotice[],
  state: NoticeAccountState,
): NoticeCheck {
  const supersedeOthers: { notice: QueuedNotice; reason: string }[] = [];
  let waitFor: QueuedNotice | null = null;
  const statusOf = new Map<number, string>();
  for (const s of siblings) {
    let status = s.status;
    if (status === 'pending') {
      const reason = noLongerTrue(s, state);
      if (reason !== null) {
        supersedeOthers.push({ notice: s, reason });
        status = 'superseded';
      } else if (s.id < notice.id) {
        waitFor ??= s;
      }
    } else if (status === 'sending' && s.id < notice.id) {
      waitFor ??= s;
    }
    statusOf.set(s.id, status);
  }

  let own = noLongerTrue(notice, state);
  if (own === null && notice.template === 'resumed' && notice.episodeSeq !== null) {
    // Skipped rather than reworded: on this channel the customer never heard of the suspension.
    const suspensions = siblings.filter((s) => SUSPENSION_TEMPLATES.has(s.template));
    const statuses = suspensions.map((s) => statusOf.get(s.id) ?? s.status);
    if (statuses.includes('superseded') && !statuses.some((st) => HANDED_OVER.has(st))) {
      own = `the suspension notice of episode ${notice.episodeSeq} on this channel was superseded (paid before it went out), so there is no suspension to report as resumed`;
    }
  }
  if (own !== null) return { verdict: { kind: 'supersede', reason: own }, supersedeOthers };
  if (waitFor !== null) {
    return {
      verdict: { kind: 'hold', reason: `${waitFor.dedupeKey} of the same episode goes first` },
      supersedeOthers,
    };
  }
  return { verdict: { kind: 'send' }, supersedeOthers };
}
