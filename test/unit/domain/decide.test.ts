import { describe, expect, it } from 'vitest';
import { decide, overdueMinor, protectionBreach } from '../../../src/domain/decide';
import type { Decision, DecisionKind } from '../../../src/domain/decisions';
import type { AccountSnapshot } from '../../../src/domain/snapshot';
import { DAY, HOUR } from '../../../src/domain/time';
import {
  T0,
  account,
  at,
  bill,
  instance,
  liveServices,
  plan,
  plusMs,
  rules,
  service,
  studio,
} from '../../support/builders';

type Of<K extends DecisionKind> = Extract<Decision, { kind: K }>;

function only<K extends DecisionKind>(ds: readonly Decision[], kind: K): Of<K> {
  const found = ds.filter((d): d is Of<K> => d.kind === kind);
  expect(found, `exactly one ${kind} in ${JSON.stringify(ds.map((d) => d.kind))}`).toHaveLength(1);
  return found[0] as Of<K>;
}

function all<K extends DecisionKind>(ds: readonly Decision[], kind: K): Of<K>[] {
  return ds.filter((d): d is Of<K> => d.kind === kind);
}

function kinds(ds: readonly Decision[]): DecisionKind[] {
  return ds.map((d) => d.kind);
}

/** An account already in an open episode that started `sinceMs` before T0. */
function inEpisode(over: Partial<AccountSnapshot> = {}, sinceMs = HOUR): AccountSnapshot {
  return account({
    episode: { seq: 1, startedAt: plusMs(T0, -sinceMs) },
    lastEpisodeSeq: 1,
    enforcementState: 'protected',
    ...over,
  });
}

describe('R2 overdue amount and episodes', () => {
  it('R2: an account with no bills decides nothing', () => {
    expect(decide(account(), T0, rules())).toEqual([]);
  });

  it('R2: a bill not yet due is not overdue and needs no timer (the scan finds it once due)', () => {
    expect(decide(account({ bills: [bill({ dueAt: plusMs(T0, HOUR) })] }), T0, rules())).toEqual(
      [],
    );
  });

  it('R2: a bill exactly at its due instant is not yet past due', () => {
    const ds = decide(account({ bills: [bill({ dueAt: T0 })] }), T0, rules());
    expect(kinds(ds)).not.toContain('open-episode');
  });

  const amountCases: { name: string; bills: ReturnType<typeof bill>[]; expected: number }[] = [
    {
      name: 'R2: overdue amount of one unpaid bill',
      bills: [bill({ amountMinor: 700 })],
      expected: 700,
    },
    {
      name: 'R2: overdue amount sums bills of every product',
      bills: [
        bill({ id: 'b1', product: 'live', amountMinor: 700 }),
        bill({ id: 'b2', product: 'oss', amountMinor: 300 }),
        bill({ id: 'b3', product: 'ecs', amountMinor: 5 }),
      ],
      expected: 1_005,
    },
    {
      name: 'R2: a partly paid bill counts its unpaid remainder',
      bills: [bill({ amountMinor: 1_000, paidMinor: 400 })],
      expected: 600,
    },
    {
      name: 'R2: an overpaid bill counts zero, not negative',
      bills: [
        bill({ id: 'b1', amountMinor: 100, paidMinor: 500 }),
        bill({ id: 'b2', amountMinor: 50 }),
      ],
      expected: 50,
    },
    {
      name: 'R2: bills not yet due do not count',
      bills: [
        bill({ id: 'b1', amountMinor: 100 }),
        bill({ id: 'b2', amountMinor: 50, dueAt: plusMs(T0, 1) }),
      ],
      expected: 100,
    },
  ];
  it.each(amountCases)('$name', ({ bills, expected }) => {
    expect(overdueMinor(bills, T0)).toBe(expected);
  });

  it('R2: the first overdue opens episode 1, started at the earliest overdue due instant', () => {
    const early = plusMs(T0, -5 * HOUR);
    const ds = decide(
      account({
        bills: [bill({ id: 'b1', dueAt: plusMs(T0, -HOUR) }), bill({ id: 'b2', dueAt: early })],
      }),
      T0,
      rules(),
    );
    const open = only(ds, 'open-episode');
    expect(open.episodeSeq).toBe(1);
    expect(open.startedAt).toEqual(early);
    expect(open.key).toBe('episode-open-v1-acct-1-e1');
  });

  it('R2: a new episode never starts before the previous one ended', () => {
    const ended = plusMs(T0, -HOUR);
    const ds = decide(
      account({
        lastEpisodeSeq: 3,
        lastEpisodeEndedAt: ended,
        bills: [bill({ dueAt: plusMs(T0, -DAY) })],
      }),
      T0,
      rules(),
    );
    const open = only(ds, 'open-episode');
    expect(open.episodeSeq).toBe(4);
    expect(open.startedAt).toEqual(ended);
  });

  it('R2: the overdue amount back at zero closes the open episode', () => {
    const ds = decide(inEpisode({ bills: [bill({ paidMinor: 1_000 })] }), T0, rules());
    const close = only(ds, 'close-episode');
    expect(close).toMatchObject({ episodeSeq: 1, endedAt: T0, key: 'episode-close-v1-acct-1-e1' });
    expect(only(ds, 'set-state')).toMatchObject({ from: 'protected', to: 'active' });
  });
});

describe('R3 low balance', () => {
  it('R3: a balance below the threshold sends one reminder keyed by the local day', () => {
    const ds = decide(account({ availableBalanceMinor: 9_999 }), T0, rules());
    const r = only(ds, 'low-balance-reminder');
    expect(r.key).toBe('lowbal-v1-acct-1-2026-03-02');
    expect(r.notice).toMatchObject({
      template: 'low-balance',
      channels: ['email', 'sms'],
      params: { balanceMinor: 9_999, thresholdMinor: 10_000, currency: 'USD' },
    });
  });

  it('R3: a balance exactly at the threshold is not low', () => {
    expect(decide(account({ availableBalanceMinor: 10_000 }), T0, rules())).toEqual([]);
  });

  it("R3: the account's own threshold replaces the default", () => {
    const ds = decide(
      account({ availableBalanceMinor: 9_999, lowBalanceThresholdMinor: 5_000 }),
      T0,
      rules(),
    );
    expect(ds).toEqual([]);
    const ds2 = decide(
      account({ availableBalanceMinor: 4_999, lowBalanceThresholdMinor: 5_000 }),
      T0,
      rules(),
    );
    expect(kinds(ds2)).toEqual(['low-balance-reminder']);
  });

  it('R3: the reminder window is the local day of the account, not the UTC day', () => {
    const a = account({ availableBalanceMinor: 0, timeZone: 'Asia/Shanghai' });
    // 15:59 UTC is 23:59 in Shanghai; 16:00 UTC is already the next local day.
    const k1 = only(decide(a, at('2026-03-02T15:59:00Z'), rules()), 'low-balance-reminder').key;
    const k2 = only(decide(a, at('2026-03-02T01:00:00Z'), rules()), 'low-balance-reminder').key;
    const k3 = only(decide(a, at('2026-03-02T16:00:00Z'), rules()), 'low-balance-reminder').key;
    expect(k1).toBe(k2);
    expect(k3).not.toBe(k1);
    expect(k3).toBe('lowbal-v1-acct-1-2026-03-03');
    // The window ends at the next local midnight (16:00 UTC in Shanghai).
    expect(
      only(decide(a, at('2026-03-02T15:59:00Z'), rules()), 'low-balance-reminder').until,
    ).toEqual(at('2026-03-02T16:00:00Z'));
  });

  it('R3: a fixed reminder interval windows on the epoch', () => {
    const r = rules({ lowBalanceReminder: { kind: 'every', ms: 6 * HOUR } });
    const a = account({ availableBalanceMinor: 0 });
    const k1 = only(decide(a, at('2026-03-02T06:00:00Z'), r), 'low-balance-reminder').key;
    const k2 = only(decide(a, at('2026-03-02T11:59:59Z'), r), 'low-balance-reminder').key;
    const k3 = only(decide(a, at('2026-03-02T12:00:00Z'), r), 'low-balance-reminder').key;
    expect(k1).toBe(k2);
    expect(k3).not.toBe(k1);
    expect(only(decide(a, at('2026-03-02T06:00:00Z'), r), 'low-balance-reminder').until).toEqual(
      at('2026-03-02T12:00:00Z'),
    );
  });

  it('R3: the reminder goes only to the channels the account accepts', () => {
    const ds = decide(account({ availableBalanceMinor: 0, channels: ['email'] }), T0, rules());
    expect(only(ds, 'low-balance-reminder').notice.channels).toEqual(['email']);
  });

  it('R3: no low-balance reminder while overdue (the overdue reminder asks for the top-up)', () => {
    const ds = decide(account({ availableBalanceMinor: 0, bills: [bill()] }), T0, rules());
    expect(kinds(ds)).not.toContain('low-balance-reminder');
    expect(kinds(ds)).toContain('overdue-reminder');
  });
});

describe('R4 suspension protection', () => {
  const amount = (amountMinor: number | null, durationMs: number | null = null) => ({
    amountMinor,
    durationMs,
  });
  const cases: {
    name: string;
    protection: { amountMinor: number | null; durationMs: number | null } | null;
    overdue: number;
    sinceMs: number;
    expected: 'protected' | 'amount' | 'duration' | 'no-protection';
  }[] = [
    {
      name: 'R4: overdue exactly at the quota amount stays protected',
      protection: amount(5_000),
      overdue: 5_000,
      sinceMs: HOUR,
      expected: 'protected',
    },
    {
      name: 'R4: overdue one minor unit past the quota amount is suspended',
      protection: amount(5_000),
      overdue: 5_001,
      sinceMs: HOUR,
      expected: 'amount',
    },
    {
      name: 'R4: exactly at the quota duration stays protected',
      protection: amount(null, DAY),
      overdue: 10 ** 9,
      sinceMs: DAY,
      expected: 'protected',
    },
    {
      name: 'R4: one millisecond past the quota duration is suspended',
      protection: amount(null, DAY),
      overdue: 1,
      sinceMs: DAY + 1,
      expected: 'duration',
    },
    {
      name: 'R4: both limits, neither exceeded, stays protected',
      protection: amount(5_000, DAY),
      overdue: 5_000,
      sinceMs: DAY,
      expected: 'protected',
    },
    {
      name: 'R4: both limits, amount exceeded first, ends protection',
      protection: amount(5_000, DAY),
      overdue: 5_001,
      sinceMs: HOUR,
      expected: 'amount',
    },
    {
      name: 'R4: both limits, duration exceeded first, ends protection',
      protection: amount(5_000, DAY),
      overdue: 1,
      sinceMs: DAY + 1,
      expected: 'duration',
    },
    {
      name: 'R4: no quota at all means no protection',
      protection: amount(null, null),
      overdue: 1,
      sinceMs: 1,
      expected: 'no-protection',
    },
    {
      name: 'R4: a zero amount quota suspends at the first overdue unit',
      protection: amount(0),
      overdue: 1,
      sinceMs: 1,
      expected: 'amount',
    },
    {
      name: 'R4: the default quota (5000) applies when the account sets none',
      protection: null,
      overdue: 5_000,
      sinceMs: 30 * DAY,
      expected: 'protected',
    },
    {
      name: 'R4: the default quota ends protection one unit past it',
      protection: null,
      overdue: 5_001,
      sinceMs: HOUR,
      expected: 'amount',
    },
  ];

  it.each(cases)('$name', ({ protection, overdue, sinceMs, expected }) => {
    const a = inEpisode(
      {
        protection,
        services: liveServices(),
        bills: [bill({ amountMinor: overdue, dueAt: plusMs(T0, -sinceMs) })],
      },
      sinceMs,
    );
    const ds = decide(a, T0, rules());
    if (expected === 'protected') {
      expect(kinds(ds)).not.toContain('suspend-services');
      expect(only(ds, 'overdue-reminder').overdueMinor).toBe(overdue);
    } else {
      const s = only(ds, 'suspend-services');
      expect(s.cause.limit).toBe(expected);
      expect(s.services.map((x) => x.serviceId).sort()).toEqual([
        'svc-rec',
        'svc-shot',
        'svc-stream',
      ]);
      expect(only(ds, 'set-state').to).toBe('suspended');
      expect(kinds(ds)).not.toContain('overdue-reminder');
    }
  });

  it('R4: protectionBreach treats both limits as inclusive bounds', () => {
    expect(protectionBreach({ amountMinor: 10, durationMs: 10 }, 10, 10)).toBeNull();
    expect(protectionBreach({ amountMinor: 10, durationMs: 10 }, 11, 10)).toBe('amount');
    expect(protectionBreach({ amountMinor: 10, durationMs: 10 }, 10, 11)).toBe('duration');
  });

  it('R4: overdue reminders during protection are keyed per episode and local day', () => {
    const a = inEpisode({ bills: [bill()] });
    const k1 = only(decide(a, T0, rules()), 'overdue-reminder').key;
    const k2 = only(decide(a, plusMs(T0, HOUR), rules()), 'overdue-reminder').key;
    const k3 = only(decide(a, plusMs(T0, DAY), rules()), 'overdue-reminder').key;
    expect(k1).toBe('overdue-reminder-v1-acct-1-e1-2026-03-02');
    expect(k2).toBe(k1);
    expect(k3).toBe('overdue-reminder-v1-acct-1-e1-2026-03-03');
  });

  it('R4: a duration quota wakes the account one millisecond after protection ends', () => {
    const start = plusMs(T0, -HOUR);
    const a = inEpisode(
      { protection: { amountMinor: null, durationMs: 2 * HOUR }, bills: [bill({ dueAt: start })] },
      HOUR,
    );
    expect(only(decide(a, T0, rules()), 'wake').at).toEqual(plusMs(start, 2 * HOUR + 1));
  });

  it('R4: the first overdue of an account enters protection', () => {
    const ds = decide(account({ bills: [bill()] }), T0, rules());
    expect(kinds(ds)).toEqual(['open-episode', 'overdue-reminder', 'set-state']);
    expect(only(ds, 'set-state')).toMatchObject({ from: 'active', to: 'protected' });
  });
});

describe('R5 suspension', () => {
  const beyond = (over: Partial<AccountSnapshot> = {}) =>
    inEpisode({
      protection: { amountMinor: 0, durationMs: null },
      services: liveServices(),
      bills: [bill({ amountMinor: 2_500 })],
      ...over,
    });

  it('R5: protection ended suspends every live service and tells the customer the amount', () => {
    const ds = decide(beyond(), T0, rules());
    const s = only(ds, 'suspend-services');
    expect(s.key).toBe('suspend-v1-acct-1-e1');
    expect(s.services).toEqual([
      { serviceId: 'svc-stream', key: 'suspend-svc-v1-svc-stream-e1', callControlPlane: true },
      { serviceId: 'svc-rec', key: 'suspend-svc-v1-svc-rec-e1', callControlPlane: true },
      { serviceId: 'svc-shot', key: 'suspend-svc-v1-svc-shot-e1', callControlPlane: true },
    ]);
    expect(s.notice.template).toBe('suspended');
    expect(s.notice.params).toMatchObject({ overdueMinor: 2_500, currency: 'USD' });
  });

  it('R5: data is never deleted: no decision other than suspension touches services', () => {
    const ds = decide(beyond(), T0, rules());
    expect(kinds(ds).sort()).toEqual(['set-state', 'suspend-services']);
  });

  it("R5: services of other products are not this daemon's to suspend", () => {
    const ds = decide(
      beyond({ services: [service({ id: 'svc-ecs', kind: 'other' })] }),
      T0,
      rules(),
    );
    expect(only(ds, 'suspend-services').services).toEqual([]);
  });

  it('R5: a service created after the suspension is suspended too, under the same notice key', () => {
    const services = [
      service({ id: 'svc-stream', status: 'suspended', overdueHold: true }),
      service({ id: 'svc-new', kind: 'recording' }),
    ];
    const ds = decide(beyond({ enforcementState: 'suspended', services }), T0, rules());
    const s = only(ds, 'suspend-services');
    expect(s.key).toBe('suspend-v1-acct-1-e1');
    expect(s.services.map((x) => x.serviceId)).toEqual(['svc-new']);
    expect(s.cause.limit).toBe('amount');
  });

  it('R5: an already suspended account with nothing new to suspend decides nothing', () => {
    const services = liveServices().map((x) => ({
      ...x,
      status: 'suspended' as const,
      overdueHold: true,
    }));
    expect(decide(beyond({ enforcementState: 'suspended', services }), T0, rules())).toEqual([]);
  });

  it('R5: a partial payment back within the quota does not resume a suspended account', () => {
    const services = liveServices().map((x) => ({
      ...x,
      status: 'suspended' as const,
      overdueHold: true,
    }));
    const ds = decide(
      beyond({
        enforcementState: 'suspended',
        protection: { amountMinor: 5_000, durationMs: null },
        services,
        bills: [bill({ amountMinor: 2_500, paidMinor: 2_000 })],
      }),
      T0,
      rules(),
    );
    expect(kinds(ds)).not.toContain('resume-services');
    expect(kinds(ds)).not.toContain('overdue-reminder');
  });

  it('R5: a service an operator already holds gets the overdue hold without a control-plane call', () => {
    const ds = decide(
      beyond({ services: [service({ id: 'svc-op', status: 'suspended', operatorHold: true })] }),
      T0,
      rules(),
    );
    expect(only(ds, 'suspend-services').services).toEqual([
      { serviceId: 'svc-op', key: 'suspend-svc-v1-svc-op-e1', callControlPlane: false },
    ]);
  });

  it('R5: a pay-as-you-go studio is a live service suspended with the rest', () => {
    const ds = decide(beyond({ services: [studio({ planType: 'payg' })] }), T0, rules());
    expect(only(ds, 'suspend-services').services.map((x) => x.serviceId)).toEqual(['svc-studio']);
    expect(kinds(ds)).not.toContain('suspend-studio');
  });
});

describe('R6 account-wide overdue', () => {
  it("R6: another product's overdue bill suspends live video and the cause names it", () => {
    const ds = decide(
      inEpisode({
        protection: { amountMinor: 100, durationMs: null },
        services: liveServices(),
        bills: [bill({ product: 'oss', amountMinor: 101 })],
      }),
      T0,
      rules(),
    );
    const s = only(ds, 'suspend-services');
    expect(s.cause).toEqual({ products: ['oss'], otherProducts: ['oss'], limit: 'amount' });
    expect(s.notice.params).toMatchObject({ causedByOtherProduct: true, otherProducts: ['oss'] });
  });

  it('R6: live and other products add up towards one quota; the cause lists both', () => {
    const ds = decide(
      inEpisode({
        protection: { amountMinor: 100, durationMs: null },
        services: liveServices(),
        bills: [
          bill({ id: 'b1', product: 'live', amountMinor: 60 }),
          bill({ id: 'b2', product: 'ecs', amountMinor: 41 }),
        ],
      }),
      T0,
      rules(),
    );
    expect(only(ds, 'suspend-services').cause).toEqual({
      products: ['ecs', 'live'],
      otherProducts: ['ecs'],
      limit: 'amount',
    });
  });

  it('R6: live video alone is not "another product"', () => {
    const ds = decide(
      inEpisode({ protection: { amountMinor: 0, durationMs: null }, bills: [bill()] }),
      T0,
      rules(),
    );
    expect(only(ds, 'suspend-services').notice.params).toMatchObject({
      causedByOtherProduct: false,
    });
  });
});

describe('R7 resume', () => {
  const paid = [bill({ amountMinor: 1_000, paidMinor: 1_000 })];
  const held = (over: Partial<ReturnType<typeof service>> = {}) =>
    service({ status: 'suspended', overdueHold: true, ...over });

  it('R7: paying everything resumes what overdue suspended, closes the episode and tells the customer', () => {
    const ds = decide(
      inEpisode({
        enforcementState: 'suspended',
        bills: paid,
        services: [held({ id: 'svc-stream' }), held({ id: 'svc-rec', kind: 'recording' })],
      }),
      T0,
      rules(),
    );
    const r = only(ds, 'resume-services');
    expect(r.services).toEqual([
      { serviceId: 'svc-stream', key: 'resume-svc-v1-svc-stream-e1', callControlPlane: true },
      { serviceId: 'svc-rec', key: 'resume-svc-v1-svc-rec-e1', callControlPlane: true },
    ]);
    expect(r.notice.template).toBe('resumed');
    expect(kinds(ds)).toContain('close-episode');
    expect(only(ds, 'set-state')).toMatchObject({ from: 'suspended', to: 'active' });
  });

  it('R7: a service only an operator suspended is left alone', () => {
    const ds = decide(
      inEpisode({
        enforcementState: 'suspended',
        bills: paid,
        services: [
          held({ id: 'svc-a' }),
          service({ id: 'svc-op', status: 'suspended', operatorHold: true }),
        ],
      }),
      T0,
      rules(),
    );
    expect(only(ds, 'resume-services').services.map((s) => s.serviceId)).toEqual(['svc-a']);
  });

  it("R7: a service held by both loses overdue's hold but is not resumed at the control plane", () => {
    const ds = decide(
      inEpisode({
        enforcementState: 'suspended',
        bills: paid,
        services: [held({ operatorHold: true })],
      }),
      T0,
      rules(),
    );
    expect(only(ds, 'resume-services').services).toEqual([
      { serviceId: 'svc-stream', key: 'resume-svc-v1-svc-stream-e1', callControlPlane: false },
    ]);
  });

  it('R7: overdue holds that outlived their episode are lifted at the next evaluation', () => {
    const ds = decide(
      account({ lastEpisodeSeq: 2, enforcementState: 'active', services: [held()] }),
      T0,
      rules(),
    );
    expect(only(ds, 'resume-services').services[0]?.key).toBe('resume-svc-v1-svc-stream-e2');
    expect(kinds(ds)).not.toContain('close-episode');
  });

  it('R7: an account that paid while still protected gets no resume notice', () => {
    const ds = decide(inEpisode({ bills: paid, services: liveServices() }), T0, rules());
    expect(kinds(ds)).not.toContain('resume-services');
    expect(kinds(ds)).toContain('close-episode');
  });

  it('R7: a released studio stays released', () => {
    const ds = decide(
      inEpisode({
        enforcementState: 'suspended',
        bills: paid,
        services: [studio({ status: 'released', overdueHold: true })],
        studioInstances: [
          instance({ releaseDueAt: plusMs(T0, -HOUR), releasedAt: plusMs(T0, -HOUR) }),
        ],
      }),
      T0,
      rules(),
    );
    expect(only(ds, 'resume-services').services).toEqual([]);
    expect(kinds(ds)).not.toContain('cancel-release');
  });

  it("R9: a released studio's service drops its overdue hold when the episode ends, and stays released", () => {
    const released = studio({ status: 'released', overdueHold: true });
    const ds = decide(
      inEpisode({
        bills: paid,
        services: [released],
        studioInstances: [
          instance({ releaseDueAt: plusMs(T0, -HOUR), releasedAt: plusMs(T0, -HOUR) }),
        ],
      }),
      T0,
      rules(),
    );
    expect(only(ds, 'clear-released-holds')).toEqual({
      kind: 'clear-released-holds',
      key: 'released-holds-clear-v1-acct-1-e1',
      episodeSeq: 1,
      serviceIds: [released.id],
    });
    expect(kinds(ds)).not.toContain('resume-services');
    // Still overdue: the hold that led to the release stays.
    const still = decide(
      inEpisode({
        bills: [bill({ dueAt: plusMs(T0, -1) })],
        services: [released],
        studioInstances: [
          instance({ releaseDueAt: plusMs(T0, -HOUR), releasedAt: plusMs(T0, -HOUR) }),
        ],
      }),
      T0,
      rules(),
    );
    expect(kinds(still)).not.toContain('clear-released-holds');
  });
});

describe('R9 production studio on a duration plan', () => {
  const overdueNow = [bill({ dueAt: plusMs(T0, -1) })];

  it('R9: suspended at once on the first overdue, even within protection', () => {
    const ds = decide(
      account({ bills: overdueNow, services: [studio()], studioInstances: [instance()] }),
      T0,
      rules(),
    );
    const s = only(ds, 'suspend-studio');
    expect(s.services).toEqual([
      {
        serviceId: 'svc-studio',
        key: 'studio-suspend-svc-v1-svc-studio-e1',
        callControlPlane: true,
      },
    ]);
    expect(kinds(ds)).toContain('overdue-reminder');
    expect(kinds(ds)).not.toContain('suspend-services');
  });

  it('R9: the suspension notice warns about studios still streaming', () => {
    const ds = decide(
      account({
        bills: overdueNow,
        services: [studio()],
        studioInstances: [
          instance({ id: 'i1', name: 'Stage B', streaming: true }),
          instance({ id: 'i2', name: 'Stage A', streaming: true }),
          instance({ id: 'i3', name: 'Idle', streaming: false }),
        ],
      }),
      T0,
      rules(),
    );
    expect(only(ds, 'suspend-studio').notice.params).toMatchObject({
      anyStreaming: true,
      streamingStudios: ['Stage A', 'Stage B'],
    });
  });

  it('R9: each instance is scheduled for release 24 h after the suspension', () => {
    const ds = decide(
      account({ bills: overdueNow, services: [studio()], studioInstances: [instance()] }),
      T0,
      rules(),
    );
    expect(only(ds, 'schedule-release')).toMatchObject({
      key: 'release-timer-v1-inst-1-e1',
      instanceId: 'inst-1',
      dueAt: plusMs(T0, DAY),
    });
  });

  it('R9: across a DST change the release is 24 elapsed hours later, not the same wall time', () => {
    // New York springs forward on 2026-03-08 at 02:00 local.
    const suspendedAt = at('2026-03-07T17:00:00Z'); // 12:00 EST
    const a = account({
      timeZone: 'America/New_York',
      bills: [bill({ dueAt: plusMs(suspendedAt, -1) })],
      services: [studio()],
      studioInstances: [instance()],
    });
    const due = only(decide(a, suspendedAt, rules()), 'schedule-release').dueAt;
    expect(due.toISOString()).toBe('2026-03-08T17:00:00.000Z'); // 13:00 EDT
    const held = inEpisode(
      {
        timeZone: 'America/New_York',
        bills: [bill({ dueAt: plusMs(suspendedAt, -1) })],
        services: [studio({ status: 'suspended', overdueHold: true })],
        studioInstances: [instance({ releaseDueAt: due })],
      },
      0,
    );
    expect(kinds(decide(held, plusMs(due, -1), rules()))).not.toContain('release-studio');
    expect(only(decide(held, due, rules()), 'release-studio').key).toBe('release-v1-inst-1-e1');
  });

  const pending = (due: Date) =>
    inEpisode({
      bills: overdueNow,
      services: [studio({ status: 'suspended', overdueHold: true })],
      studioInstances: [instance({ releaseDueAt: due })],
    });

  it('R9: a warning goes out 2 h before the release', () => {
    const due = plusMs(T0, 2 * HOUR);
    const w = only(decide(pending(due), T0, rules()), 'release-warning');
    expect(w).toMatchObject({ key: 'release-warning-v1-inst-1-e1', releaseAt: due });
    expect(w.notice.template).toBe('studio-release-warning');
  });

  it('R9: before the warning window the account wakes at the warning instant', () => {
    const due = plusMs(T0, 5 * HOUR);
    const ds = decide(pending(due), T0, rules());
    expect(kinds(ds)).not.toContain('release-warning');
    expect(only(ds, 'wake').at).toEqual(plusMs(due, -2 * HOUR));
  });

  it('R9: an evaluation after the due instant releases without a late warning', () => {
    const ds = decide(pending(plusMs(T0, -HOUR)), T0, rules());
    const r = only(ds, 'release-studio');
    expect(r.notice.template).toBe('studio-released');
    expect(kinds(ds)).not.toContain('release-warning');
  });

  it('R9: a released instance is never released again', () => {
    const ds = decide(
      inEpisode({
        bills: overdueNow,
        services: [studio({ status: 'released', overdueHold: true })],
        studioInstances: [
          instance({ releaseDueAt: plusMs(T0, -HOUR), releasedAt: plusMs(T0, -HOUR) }),
        ],
      }),
      T0,
      rules(),
    );
    expect(kinds(ds)).not.toContain('release-studio');
    expect(kinds(ds)).not.toContain('schedule-release');
  });

  it('R9: paying before the release cancels it and resumes the studio', () => {
    const due = plusMs(T0, HOUR);
    const ds = decide(
      inEpisode({
        enforcementState: 'protected',
        bills: [bill({ paidMinor: 1_000 })],
        services: [studio({ status: 'suspended', overdueHold: true })],
        studioInstances: [instance({ releaseDueAt: due })],
      }),
      plusMs(due, -1),
      rules(),
    );
    expect(only(ds, 'cancel-release')).toMatchObject({
      key: 'release-cancel-v1-inst-1-e1',
      releaseKey: 'release-timer-v1-inst-1-e1',
    });
    expect(only(ds, 'resume-services').services.map((s) => s.serviceId)).toEqual(['svc-studio']);
    expect(kinds(ds)).not.toContain('release-studio');
  });

  it('R9: a payment even after the due instant prevents the release (the episode ended first)', () => {
    const ds = decide(
      inEpisode({
        bills: [bill({ paidMinor: 1_000 })],
        services: [studio({ status: 'suspended', overdueHold: true })],
        studioInstances: [instance({ releaseDueAt: plusMs(T0, -1) })],
      }),
      T0,
      rules(),
    );
    expect(kinds(ds)).not.toContain('release-studio');
    expect(kinds(ds)).toContain('cancel-release');
  });

  it('R9: the release delay and warning come from the rules', () => {
    const r = rules({ studioReleaseDelayMs: 30_000, studioReleaseWarningMs: 10_000 });
    const ds = decide(
      account({ bills: overdueNow, services: [studio()], studioInstances: [instance()] }),
      T0,
      r,
    );
    expect(only(ds, 'schedule-release').dueAt).toEqual(plusMs(T0, 30_000));
    expect(only(ds, 'wake').at).toEqual(plusMs(T0, 20_000));
  });
});

describe('snapshot validation (bad rows from the billing system)', () => {
  const cases: { name: string; over: Partial<AccountSnapshot>; code: string }[] = [
    { name: 'unknown time zone', over: { timeZone: 'Mars/Olympus' }, code: 'bad-zone' },
    { name: 'unknown currency', over: { currency: 'XYZ' }, code: 'bad-currency' },
    { name: 'lower-case currency', over: { currency: 'usd' }, code: 'bad-currency' },
    {
      name: 'negative quota amount',
      over: { protection: { amountMinor: -1, durationMs: null } },
      code: 'bad-quota',
    },
    {
      name: 'negative quota duration',
      over: { protection: { amountMinor: null, durationMs: -5 } },
      code: 'bad-quota',
    },
    { name: 'fractional balance', over: { availableBalanceMinor: 10.5 }, code: 'bad-balance' },
    { name: 'account id with a colon', over: { accountId: 'a:b' }, code: 'bad-id' },
    { name: 'negative bill', over: { bills: [bill({ amountMinor: -3 })] }, code: 'bad-bill' },
    {
      name: 'threshold above 100 %',
      over: { planThresholds: [{ kind: 'percent', percent: 120 }] },
      code: 'bad-threshold',
    },
    {
      name: 'episode after the last sequence',
      over: { episode: { seq: 2, startedAt: T0 }, lastEpisodeSeq: 1 },
      code: 'bad-episode',
    },
    {
      name: 'fractional low-balance threshold',
      over: { lowBalanceThresholdMinor: 0.5 },
      code: 'bad-low-balance',
    },
    {
      name: 'bill without a valid due instant',
      over: { bills: [bill({ dueAt: new Date(Number.NaN) })] },
      code: 'bad-bill',
    },
    {
      name: 'service id with a colon',
      over: { services: [service({ id: 's:1' })] },
      code: 'bad-id',
    },
    {
      name: 'studio instance id with a space',
      over: { studioInstances: [instance({ id: 'i 1' })] },
      code: 'bad-id',
    },
    { name: 'plan kind with a colon', over: { plans: [plan({ kind: 'a:b' })] }, code: 'bad-id' },
    {
      name: 'plan with negative units',
      over: { plans: [plan({ usedUnits: -1 })] },
      code: 'bad-plan',
    },
    {
      name: 'plan threshold of zero percent',
      over: { plans: [plan({ thresholds: [{ kind: 'percent', percent: 0 }] })] },
      code: 'bad-threshold',
    },
  ];
  it.each(cases)('a snapshot with $name yields one invalid-snapshot decision', ({ over, code }) => {
    const ds = decide(account({ bills: [bill()], ...over }), T0, rules());
    expect(kinds(ds)).toEqual(['invalid-snapshot']);
    expect(only(ds, 'invalid-snapshot').key).toMatch(
      new RegExp(`^invalid-v1-[A-Za-z0-9_.-]+-${code}$`),
    );
  });
});

describe('idempotency keys', () => {
  it('every key of a busy evaluation is free of ":" and unique', () => {
    const ds = decide(
      inEpisode({
        protection: { amountMinor: 0, durationMs: null },
        bills: [bill(), bill({ id: 'b-later', dueAt: plusMs(T0, DAY) })],
        services: [...liveServices(), studio()],
        studioInstances: [instance()],
      }),
      T0,
      rules(),
    );
    const keyList = ds.map((d) => d.key);
    expect(keyList.length).toBeGreaterThan(4);
    for (const k of keyList) expect(k).not.toContain(':');
    expect(new Set(keyList).size).toBe(keyList.length);
    expect(all(ds, 'wake')).toHaveLength(1);
  });

  it('the same snapshot and instant always give the same decisions', () => {
    const a = inEpisode({ bills: [bill()], services: liveServices() });
    expect(decide(a, T0, rules())).toEqual(decide(a, T0, rules()));
  });
});
