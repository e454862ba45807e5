import { describe, expect, it } from 'vitest';
import { decide } from '../../../src/domain/decide';
import type { Decision, DecisionKind } from '../../../src/domain/decisions';
import { allocateUsage, consumptionOrder, crossedThreshold } from '../../../src/domain/plans';
import type { PlanThreshold } from '../../../src/domain/rules';
import { DAY } from '../../../src/domain/time';
import { T0, account, plan, plusMs, rules } from '../../support/builders';

type Of<K extends DecisionKind> = Extract<Decision, { kind: K }>;
const pick = <K extends DecisionKind>(ds: readonly Decision[], kind: K): Of<K>[] =>
  ds.filter((d): d is Of<K> => d.kind === kind);

const pct = (percent: number): PlanThreshold => ({ kind: 'percent', percent });
const units = (n: number): PlanThreshold => ({ kind: 'units', units: n });

describe('R10 plan quota alerts', () => {
  const cases: { name: string; used: number; total: number; expected: string | null }[] = [
    { name: 'R10: 21 % remaining alerts nothing', used: 790, total: 1_000, expected: null },
    {
      name: 'R10: exactly 20 % remaining crosses the 20 % threshold',
      used: 800,
      total: 1_000,
      expected: 'p20',
    },
    { name: 'R10: 19.9 % remaining crosses 20 %', used: 801, total: 1_000, expected: 'p20' },
    {
      name: 'R10: 5 % remaining sends only the most severe alert (5 %)',
      used: 950,
      total: 1_000,
      expected: 'p5',
    },
    {
      name: 'R10: a depleted only plan leaves the set empty: no quota alert (and no division by zero)',
      used: 1_000,
      total: 1_000,
      expected: null,
    },
  ];
  it.each(cases)('$name', ({ used, total, expected }) => {
    const ds = decide(
      account({ plans: [plan({ usedUnits: used, totalUnits: total })] }),
      T0,
      rules(),
    );
    const alerts = pick(ds, 'plan-quota-alert');
    if (expected === null) {
      expect(alerts).toEqual([]);
    } else {
      expect(alerts).toHaveLength(1);
      expect(alerts[0]?.key).toBe(`plan-quota-v1-acct-1-transcoding-plan-1-${expected}`);
    }
  });

  it('R10: a depleted last plan is a revert to pay-as-you-go, not a quota alert', () => {
    const ds = decide(account({ plans: [plan({ usedUnits: 1_000 })] }), T0, rules());
    expect(pick(ds, 'plan-quota-alert')).toEqual([]);
    expect(pick(ds, 'payg-revert-notice')).toHaveLength(1);
  });

  it('R10: stacked plans of a kind are one set: remaining and total are summed', () => {
    const ds = decide(
      account({
        plans: [
          plan({ id: 'p-a', totalUnits: 1_000, usedUnits: 1_000 - 100 }),
          plan({
            id: 'p-b',
            totalUnits: 1_000,
            usedUnits: 1_000 - 250,
            purchasedAt: plusMs(T0, -DAY),
          }),
        ],
      }),
      T0,
      rules(),
    );
    const [alert] = pick(ds, 'plan-quota-alert');
    expect(alert).toMatchObject({
      remainingUnits: 350,
      totalUnits: 2_000,
      key: 'plan-quota-v1-acct-1-transcoding-p-b-p20',
    });
  });

  it('R10: buying a new plan re-arms the alert under a new key', () => {
    const old = plan({ id: 'p-old', usedUnits: 900 });
    const before = pick(decide(account({ plans: [old] }), T0, rules()), 'plan-quota-alert')[0]?.key;
    const bought = plan({
      id: 'p-new',
      totalUnits: 100,
      usedUnits: 90,
      purchasedAt: plusMs(T0, -1),
    });
    const after = pick(
      decide(account({ plans: [old, bought] }), T0, rules()),
      'plan-quota-alert',
    )[0]?.key;
    expect(before).toBe('plan-quota-v1-acct-1-transcoding-p-old-p20');
    expect(after).toBe('plan-quota-v1-acct-1-transcoding-p-new-p20');
  });

  it('R10: plan thresholds override the account, which overrides the defaults', () => {
    const p = plan({ usedUnits: 700 }); // 30 % left
    expect(pick(decide(account({ plans: [p] }), T0, rules()), 'plan-quota-alert')).toEqual([]);
    const acct = pick(
      decide(account({ plans: [p], planThresholds: [pct(30)] }), T0, rules()),
      'plan-quota-alert',
    );
    expect(acct[0]?.threshold).toEqual(pct(30));
    const own = pick(
      decide(
        account({ plans: [{ ...p, thresholds: [units(300)] }], planThresholds: [pct(50)] }),
        T0,
        rules(),
      ),
      'plan-quota-alert',
    );
    expect(own[0]?.threshold).toEqual(units(300));
  });

  it('R10: absolute thresholds work, and fire for a zero-total plan where percentages cannot', () => {
    expect(crossedThreshold([pct(20), pct(5)], 0, 0)).toBeNull();
    expect(crossedThreshold([pct(20), units(0)], 0, 0)).toEqual(units(0));
    expect(crossedThreshold([units(500), pct(20)], 400, 10_000)).toEqual(units(500));
    expect(crossedThreshold([units(500), pct(20)], 1_500, 10_000)).toEqual(pct(20));
  });

  it('R10: a plan not yet started is not part of the set', () => {
    const future = plan({ id: 'p-future', startsAt: plusMs(T0, DAY), usedUnits: 0 });
    const ds = decide(account({ plans: [plan({ usedUnits: 900 }), future] }), T0, rules());
    expect(pick(ds, 'plan-quota-alert')[0]?.totalUnits).toBe(1_000);
  });
});

describe('R10 plan expiry reminders', () => {
  const cases: { name: string; expiresIn: number; expected: number | null }[] = [
    { name: 'R10: 8 days before expiry nothing is sent', expiresIn: 8 * DAY, expected: null },
    {
      name: 'R10: exactly 7 days before expiry the 7-day reminder goes',
      expiresIn: 7 * DAY,
      expected: 7 * DAY,
    },
    {
      name: 'R10: 2 days before expiry it is still the 7-day reminder',
      expiresIn: 2 * DAY,
      expected: 7 * DAY,
    },
    { name: 'R10: within the last day the 1-day reminder goes', expiresIn: DAY - 1, expected: DAY },
  ];
  it.each(cases)('$name', ({ expiresIn, expected }) => {
    const ds = decide(
      account({ plans: [plan({ expiresAt: plusMs(T0, expiresIn) })] }),
      T0,
      rules(),
    );
    const reminders = pick(ds, 'plan-expiry-reminder');
    if (expected === null) expect(reminders).toEqual([]);
    else expect(reminders.map((r) => r.key)).toEqual([`plan-expiry-v1-plan-1-${expected}`]);
  });

  it('R10: plan reminders need no timer of their own (the plan scan finds them)', () => {
    const ds = decide(account({ plans: [plan({ expiresAt: plusMs(T0, 10 * DAY) })] }), T0, rules());
    expect(pick(ds, 'wake')).toEqual([]);
  });
});

describe('R1 pay-as-you-go by default', () => {
  it('R1: every plan of a kind expired reverts to pay-as-you-go, told once for the latest plan', () => {
    const ds = decide(
      account({
        plans: [
          plan({
            id: 'p-1',
            expiresAt: plusMs(T0, -DAY),
            purchasedAt: plusMs(T0, -40 * DAY),
            startsAt: plusMs(T0, -40 * DAY),
          }),
          plan({
            id: 'p-2',
            expiresAt: plusMs(T0, -1),
            purchasedAt: plusMs(T0, -30 * DAY),
            startsAt: plusMs(T0, -30 * DAY),
          }),
        ],
      }),
      T0,
      rules(),
    );
    const [notice] = pick(ds, 'payg-revert-notice');
    expect(notice).toMatchObject({ key: 'payg-revert-v1-acct-1-transcoding-p-2', planId: 'p-2' });
    expect(notice?.notice.params).toMatchObject({ reason: 'expired' });
  });

  it('R1: a depleted plan reverts too, with the reason', () => {
    const ds = decide(account({ plans: [plan({ usedUnits: 1_000 })] }), T0, rules());
    expect(pick(ds, 'payg-revert-notice')[0]?.notice.params).toMatchObject({ reason: 'depleted' });
  });

  it('R1: a plan that ended longer ago than the notice window sends nothing', () => {
    const ds = decide(
      account({
        plans: [plan({ expiresAt: plusMs(T0, -8 * DAY), startsAt: plusMs(T0, -40 * DAY) })],
      }),
      T0,
      rules(),
    );
    expect(ds).toEqual([]);
  });

  it('R1: one usable plan left of the kind means no revert', () => {
    const ds = decide(
      account({ plans: [plan({ id: 'gone', usedUnits: 1_000 }), plan({ id: 'left' })] }),
      T0,
      rules(),
    );
    expect(pick(ds, 'payg-revert-notice')).toEqual([]);
  });

  it('R1: usage beyond every plan is billed pay-as-you-go', () => {
    const a = allocateUsage([plan({ totalUnits: 100, usedUnits: 60 })], 'transcoding', 100, T0);
    expect(a).toEqual({ fromPlans: [{ planId: 'plan-1', units: 40 }], paygUnits: 60 });
  });

  it('R1: with no plan of the kind, all usage is pay-as-you-go', () => {
    expect(allocateUsage([plan()], 'storage', 7, T0)).toEqual({ fromPlans: [], paygUnits: 7 });
  });
});

describe('R10 stacked plans are consumed earliest-expiry first', () => {
  const soon = plan({ id: 'soon', totalUnits: 50, expiresAt: plusMs(T0, DAY) });
  const late = plan({
    id: 'late',
    totalUnits: 500,
    expiresAt: plusMs(T0, 30 * DAY),
    purchasedAt: plusMs(T0, -30 * DAY),
  });
  const expired = plan({ id: 'expired', totalUnits: 500, expiresAt: plusMs(T0, -1) });

  it('R10: the plan expiring first is drawn first, then the next', () => {
    expect(allocateUsage([late, soon, expired], 'transcoding', 80, T0)).toEqual({
      fromPlans: [
        { planId: 'soon', units: 50 },
        { planId: 'late', units: 30 },
      ],
      paygUnits: 0,
    });
  });

  it('R10: ties on expiry are broken by purchase then id, so the order is stable', () => {
    const a = plan({ id: 'a', expiresAt: plusMs(T0, DAY), purchasedAt: plusMs(T0, -2) });
    const b = plan({ id: 'b', expiresAt: plusMs(T0, DAY), purchasedAt: plusMs(T0, -1) });
    const c = plan({ id: 'c', expiresAt: plusMs(T0, DAY), purchasedAt: plusMs(T0, -1) });
    expect(consumptionOrder([c, b, a]).map((p) => p.id)).toEqual(['a', 'b', 'c']);
  });

  it('R10: negative or fractional usage is refused', () => {
    expect(() => allocateUsage([soon], 'transcoding', -1, T0)).toThrow(RangeError);
    expect(() => allocateUsage([soon], 'transcoding', 1.5, T0)).toThrow(RangeError);
  });
});
