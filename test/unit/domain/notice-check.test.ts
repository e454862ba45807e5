import { describe, expect, it } from 'vitest';
import {
  checkNotice,
  noLongerTrue,
  type InstanceReleaseState,
  type NoticeAccountState,
  type QueuedNotice,
  type SendVerdict,
} from '../../../src/domain/notice-check';

const T0 = new Date('2026-03-02T10:00:00Z');

function state(over: Partial<NoticeAccountState> = {}): NoticeAccountState {
  return {
    episodeSeq: 1,
    episodeOpen: true,
    enforcementState: 'suspended',
    availableBalanceMinor: 0,
    lowBalanceThresholdMinor: 10_000,
    instances: new Map(),
    ...over,
  };
}

function notice(over: Partial<QueuedNotice> = {}): QueuedNotice {
  return {
    id: 10,
    dedupeKey: `${over.template ?? 'suspended'}-${over.id ?? 10}`,
    template: 'suspended',
    status: 'pending',
    episodeSeq: 1,
    instanceId: null,
    ...over,
  };
}

const reasonOf = (v: SendVerdict): string | null => (v.kind === 'send' ? null : v.reason);

const pendingRelease: InstanceReleaseState = {
  releasedAt: null,
  releaseDueAt: new Date(T0.getTime() + 3_600_000),
  releaseEpisodeSeq: 1,
};

describe('noLongerTrue: a notice’s condition at send time', () => {
  const cases: {
    name: string;
    notice: Partial<QueuedNotice>;
    state: Partial<NoticeAccountState>;
    reason: RegExp | null;
  }[] = [
    { name: 'suspension notice, episode still open', notice: {}, state: {}, reason: null },
    {
      name: 'suspension notice after its episode ended (paid)',
      notice: {},
      state: { episodeOpen: false, enforcementState: 'active' },
      reason: /overdue episode 1 ended/,
    },
    {
      name: 'suspension notice of an earlier episode while a new one is open',
      notice: {},
      state: { episodeSeq: 2 },
      reason: /overdue episode 1 ended/,
    },
    {
      name: 'studio suspension notice after its episode ended',
      notice: { template: 'studio-suspended' },
      state: { episodeOpen: false, enforcementState: 'active' },
      reason: /episode 1 ended/,
    },
    {
      name: 'a row without its episode is not checked against episodes',
      notice: { episodeSeq: null },
      state: { episodeOpen: false, enforcementState: 'active' },
      reason: null,
    },
    {
      name: 'overdue reminder while still protected',
      notice: { template: 'overdue-reminder' },
      state: { enforcementState: 'protected' },
      reason: null,
    },
    {
      name: 'overdue reminder after the customer paid',
      notice: { template: 'overdue-reminder' },
      state: { episodeOpen: false, enforcementState: 'active' },
      reason: /episode 1 ended/,
    },
    {
      name: 'overdue reminder once the account is suspended',
      notice: { template: 'overdue-reminder' },
      state: { enforcementState: 'suspended' },
      reason: /suspended in episode 1/,
    },
    {
      name: 'low-balance reminder, balance still below the threshold',
      notice: { template: 'low-balance', episodeSeq: null },
      state: { availableBalanceMinor: 9_999, enforcementState: 'active' },
      reason: null,
    },
    {
      name: 'low-balance reminder after a top-up to exactly the threshold',
      notice: { template: 'low-balance', episodeSeq: null },
      state: { availableBalanceMinor: 10_000, enforcementState: 'active' },
      reason: /balance 10000 is no longer below the threshold 10000/,
    },
    {
      name: 'release warning, release still pending',
      notice: { template: 'studio-release-warning', instanceId: 'inst-1' },
      state: { instances: new Map([['inst-1', pendingRelease]]) },
      reason: null,
    },
    {
      name: 'release warning after the episode ended (release cancelled)',
      notice: { template: 'studio-release-warning', instanceId: 'inst-1' },
      state: {
        episodeOpen: false,
        enforcementState: 'active',
        instances: new Map([
          ['inst-1', { releasedAt: null, releaseDueAt: null, releaseEpisodeSeq: null }],
        ]),
      },
      reason: /^release cancelled: overdue episode 1 ended/,
    },
    {
      name: 'release warning whose release was cancelled while the episode is open',
      notice: { template: 'studio-release-warning', instanceId: 'inst-1' },
      state: {
        instances: new Map([
          ['inst-1', { releasedAt: null, releaseDueAt: null, releaseEpisodeSeq: null }],
        ]),
      },
      reason: /release of studio instance inst-1 was cancelled/,
    },
    {
      name: 'release warning after the release happened',
      notice: { template: 'studio-release-warning', instanceId: 'inst-1' },
      state: { instances: new Map([['inst-1', { ...pendingRelease, releasedAt: T0 }]]) },
      reason: /was released before the warning went out/,
    },
    {
      name: 'release warning for an instance that is gone',
      notice: { template: 'studio-release-warning', instanceId: 'inst-1' },
      state: {},
      reason: /no longer exists/,
    },
    {
      name: 'release warning without its instance: the episode decides',
      notice: { template: 'studio-release-warning' },
      state: {},
      reason: null,
    },
    {
      name: 'resume notice after its episode ended',
      notice: { template: 'resumed' },
      state: { episodeOpen: false, enforcementState: 'active' },
      reason: null,
    },
    {
      name: 'resume notice once a later episode suspended the account again',
      notice: { template: 'resumed' },
      state: { episodeSeq: 2, episodeOpen: true, enforcementState: 'suspended' },
      reason: /suspended again in episode 2/,
    },
    {
      name: 'resume notice while a later episode is only protected',
      notice: { template: 'resumed' },
      state: { episodeSeq: 2, episodeOpen: true, enforcementState: 'protected' },
      reason: null,
    },
    {
      name: 'a studio release notice is a fact',
      notice: { template: 'studio-released' },
      state: { episodeOpen: false, enforcementState: 'active' },
      reason: null,
    },
    {
      name: 'a plan alert is a fact',
      notice: { template: 'plan-quota-low', episodeSeq: null },
      state: {},
      reason: null,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const reason = noLongerTrue(notice(c.notice), state(c.state));
      if (c.reason === null) expect(reason).toBeNull();
      else expect(reason).toMatch(c.reason);
    });
  }
});

describe('checkNotice: the verdict with the notice’s siblings (same episode, same channel)', () => {
  const paid = state({ episodeOpen: false, enforcementState: 'active' });
  const suspension = (status: string, id = 5) =>
    notice({ id, template: 'suspended', status, dedupeKey: `suspend-${id}` });
  const resume = notice({ id: 20, template: 'resumed', dedupeKey: 'resume-20' });

  it('a notice that still holds, with nothing before it, is sent', () => {
    expect(checkNotice(notice(), [], state())).toEqual({
      verdict: { kind: 'send' },
      supersedeOthers: [],
    });
  });

  it('a suspension notice after the payment is superseded', () => {
    const r = checkNotice(notice(), [], paid);
    expect(r.verdict.kind).toBe('supersede');
    expect(reasonOf(r.verdict)).toMatch(/ended/);
  });

  it('the resume notice is skipped when the suspension notice on its channel was superseded', () => {
    const r = checkNotice(resume, [suspension('superseded')], paid);
    expect(r.verdict.kind).toBe('supersede');
    expect(reasonOf(r.verdict)).toMatch(/suspension notice of episode 1 on this channel/);
    expect(r.supersedeOthers).toEqual([]);
  });

  it('a suspension notice still pending before the resume is superseded, and the resume with it', () => {
    const pending = suspension('pending');
    const r = checkNotice(resume, [pending], paid);
    expect(r.supersedeOthers.map((o) => o.notice)).toEqual([pending]);
    expect(r.supersedeOthers[0]?.reason).toMatch(/episode 1 ended/);
    expect(r.verdict.kind).toBe('supersede');
  });

  it('the resume notice goes when the suspension notice was sent on its channel', () => {
    expect(checkNotice(resume, [suspension('sent')], paid).verdict).toEqual({ kind: 'send' });
    expect(checkNotice(resume, [suspension('delivered')], paid).verdict).toEqual({
      kind: 'send',
    });
  });

  it('one suspension notice sent on the channel is enough for the resume notice', () => {
    const r = checkNotice(
      resume,
      [suspension('superseded', 5), { ...suspension('sent', 6), template: 'studio-suspended' }],
      paid,
    );
    expect(r.verdict).toEqual({ kind: 'send' });
  });

  it('the resume notice waits while the suspension notice is being sent', () => {
    const r = checkNotice(resume, [suspension('sending')], paid);
    expect(r.verdict).toMatchObject({
      kind: 'hold',
      reason: 'suspend-5 of the same episode goes first',
    });
  });

  it('a resume notice with no suspension notice on its channel goes (nothing was superseded)', () => {
    expect(checkNotice(resume, [], paid).verdict).toEqual({ kind: 'send' });
    expect(checkNotice(resume, [suspension('failed')], paid).verdict).toEqual({ kind: 'send' });
  });

  it('a later notice waits for an earlier one of its episode that still holds', () => {
    const studio = notice({ id: 5, template: 'studio-suspended', dedupeKey: 'studio-5' });
    const r = checkNotice(notice({ id: 9 }), [studio], state());
    expect(r).toEqual({
      verdict: { kind: 'hold', reason: 'studio-5 of the same episode goes first' },
      supersedeOthers: [],
    });
  });

  it('an earlier overdue reminder no longer true is superseded and the suspension notice goes', () => {
    const reminder = notice({ id: 4, template: 'overdue-reminder', dedupeKey: 'reminder-4' });
    const r = checkNotice(notice({ id: 9 }), [reminder], state());
    expect(r.verdict).toEqual({ kind: 'send' });
    expect(r.supersedeOthers.map((o) => o.notice.dedupeKey)).toEqual(['reminder-4']);
  });

  it('a later pending sibling that still holds does not hold an earlier notice', () => {
    const later = notice({ id: 30, template: 'studio-suspended' });
    expect(checkNotice(notice({ id: 9 }), [later], state()).verdict).toEqual({ kind: 'send' });
  });

  it('settled siblings (sent, failed) hold nothing', () => {
    const r = checkNotice(
      notice({ id: 9 }),
      [suspension('sent', 3), suspension('failed', 4)],
      state(),
    );
    expect(r).toEqual({ verdict: { kind: 'send' }, supersedeOthers: [] });
  });
});
