import { describe, expect, it } from 'vitest';
import { describeDecision, payEverything, simulate } from '../../../src/domain/simulate';
import { DAY, HOUR, MINUTE } from '../../../src/domain/time';
import {
  T0,
  account,
  bill,
  instance,
  liveServices,
  plan,
  plusMs,
  rules,
  studio,
} from '../../support/builders';

const studioAccount = () =>
  account({
    bills: [bill({ dueAt: plusMs(T0, -1), amountMinor: 100_000 })],
    services: [...liveServices(), studio()],
    studioInstances: [instance()],
  });

describe('simulate (the replay behind `overdue-worker simulate`)', () => {
  it('R9/R5: an unpaid studio account is suspended at once (studio, and live video beyond the quota), warned, then released', () => {
    const result = simulate(studioAccount(), rules(), {
      from: T0,
      to: plusMs(T0, 2 * DAY),
      stepMs: HOUR,
    });
    const line = (kind: string) => result.timeline.find((e) => e.decision.kind === kind);
    expect(line('suspend-studio')?.at).toEqual(T0);
    expect(line('suspend-services')?.at).toEqual(T0); // 100000 > default quota 5000
    expect(line('release-warning')?.at).toEqual(plusMs(T0, DAY - 2 * HOUR));
    expect(line('release-studio')?.at).toEqual(plusMs(T0, DAY));
    expect(result.final.studioInstances[0]?.releasedAt).toEqual(plusMs(T0, DAY));
    expect(result.final.services.find((s) => s.kind === 'studio')?.status).toBe('released');
    expect(result.truncated).toBe(false);
  });

  it('R9: paying after the release keeps the studio released and drops its overdue hold', () => {
    const paidAt = plusMs(T0, DAY + HOUR);
    const result = simulate(studioAccount(), rules(), {
      from: T0,
      to: plusMs(T0, 2 * DAY),
      stepMs: HOUR,
      events: [{ at: paidAt, label: 'payment', apply: payEverything }],
    });
    const cleared = result.timeline.find((e) => e.decision.kind === 'clear-released-holds');
    expect(cleared?.at).toEqual(paidAt);
    expect(cleared && describeDecision(cleared.decision)).toBe(
      'overdue hold cleared from released svc-studio',
    );
    const finalStudio = result.final.services.find((s) => s.kind === 'studio');
    expect(finalStudio).toMatchObject({ status: 'released', overdueHold: false });
  });

  it('R9: a payment before the release cancels it and resumes everything', () => {
    const paidAt = plusMs(T0, 10 * HOUR);
    const result = simulate(studioAccount(), rules(), {
      from: T0,
      to: plusMs(T0, 2 * DAY),
      stepMs: HOUR,
      events: [{ at: paidAt, label: 'payment', apply: payEverything }],
    });
    const kinds = result.timeline.map((e) => e.decision.kind);
    expect(kinds).not.toContain('release-studio');
    const resume = result.timeline.find((e) => e.decision.kind === 'resume-services');
    expect(resume?.at).toEqual(paidAt);
    expect(result.final.services.every((s) => s.status === 'active')).toBe(true);
    expect(result.final.episode).toBeNull();
  });

  it('R3: reminders repeat once per local day, not once per evaluation', () => {
    const result = simulate(account({ availableBalanceMinor: 0 }), rules(), {
      from: T0,
      to: plusMs(T0, 3 * DAY - 10 * HOUR - 1), // the end of the third local day
      stepMs: 10 * MINUTE,
    });
    expect(result.timeline.filter((e) => e.decision.kind === 'low-balance-reminder')).toHaveLength(
      3,
    );
  });

  it('stops at maxSteps and says so', () => {
    const result = simulate(account(), rules(), {
      from: T0,
      to: plusMs(T0, DAY),
      stepMs: 1,
      maxSteps: 10,
    });
    expect(result).toMatchObject({ steps: 10, truncated: true });
  });

  it('describes every decision in one line', () => {
    const result = simulate(studioAccount(), rules(), {
      from: T0,
      to: plusMs(T0, DAY),
      stepMs: HOUR,
    });
    for (const entry of result.timeline) {
      expect(describeDecision(entry.decision)).toMatch(/\S/);
    }
    expect(describeDecision(result.timeline[0]!.decision)).toContain('episode 1');
  });

  it('describes every kind of decision, plans and reminders included', () => {
    const acct = account({
      availableBalanceMinor: 0,
      bills: [bill({ dueAt: plusMs(T0, -1), amountMinor: 100 })],
      plans: [
        plan({ id: 'p-low', usedUnits: 990, expiresAt: plusMs(T0, DAY) }),
        plan({
          id: 'p-gone',
          kind: 'storage',
          expiresAt: plusMs(T0, -HOUR),
          startsAt: plusMs(T0, -9 * DAY),
        }),
      ],
      services: [studio({ operatorHold: true, status: 'suspended' })],
      studioInstances: [instance()],
    });
    const result = simulate(acct, rules(), {
      from: T0,
      to: plusMs(T0, 2 * DAY),
      stepMs: HOUR,
      events: [{ at: plusMs(T0, 23 * HOUR), label: 'payment', apply: payEverything }],
    });
    const kinds = new Set(result.timeline.map((e) => e.decision.kind));
    for (const kind of [
      'overdue-reminder',
      'plan-quota-alert',
      'plan-expiry-reminder',
      'payg-revert-notice',
      'release-warning',
      'cancel-release',
      'resume-services',
      'low-balance-reminder',
    ]) {
      expect(kinds, kind).toContain(kind);
    }
    for (const entry of result.timeline) expect(describeDecision(entry.decision)).toMatch(/\S/);
    expect(describeDecision({ kind: 'wake', key: 'k', at: T0 })).toContain(T0.toISOString());
    expect(describeDecision({ kind: 'invalid-snapshot', key: 'k', reason: 'bad zone' })).toContain(
      'bad zone',
    );
    // The operator's hold outlives the payment.
    expect(result.final.services[0]).toMatchObject({ status: 'suspended', overdueHold: false });
  });
});
