import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, overdueMinor } from '../../../src/domain/decide';
import { allocateUsage } from '../../../src/domain/plans';
import type { AccountSnapshot, ServiceSnapshot } from '../../../src/domain/snapshot';
import { DAY } from '../../../src/domain/time';
import { T0, account, plusMs, rules } from '../../support/builders';

/** Arbitrary but well-formed account snapshots around T0. */
const id = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const instant = fc.integer({ min: -40 * DAY, max: 40 * DAY }).map((ms) => plusMs(T0, ms));
const maybeInstant = fc.option(instant, { nil: null });

const serviceArb: fc.Arbitrary<ServiceSnapshot> = fc
  .record({
    id,
    kind: fc.constantFrom('streaming', 'recording', 'screenshots', 'studio', 'other'),
    planType: fc.constantFrom('payg', 'duration'),
    released: fc.boolean(),
    overdueHold: fc.boolean(),
    operatorHold: fc.boolean(),
  })
  .map(({ released, ...s }) => ({
    ...s,
    status: released ? 'released' : s.overdueHold || s.operatorHold ? 'suspended' : 'active',
  }));

const snapshotArb: fc.Arbitrary<AccountSnapshot> = fc
  .record({
    balance: fc.integer({ min: -1_000_000, max: 1_000_000 }),
    threshold: fc.option(fc.integer({ min: 0, max: 50_000 }), { nil: null }),
    protection: fc.option(
      fc.record({
        amountMinor: fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: null }),
        durationMs: fc.option(fc.integer({ min: 0, max: 10 * DAY }), { nil: null }),
      }),
      { nil: null },
    ),
    state: fc.constantFrom('active', 'protected', 'suspended'),
    lastSeq: fc.integer({ min: 0, max: 5 }),
    episodeOpen: fc.boolean(),
    episodeStart: instant,
    lastEnded: maybeInstant,
    zone: fc.constantFrom('UTC', 'Asia/Shanghai', 'America/New_York', 'Europe/London'),
    // Ids are primary keys in the database: unique within an account's snapshot.
    bills: fc.uniqueArray(
      fc.record({
        id,
        product: fc.constantFrom('live', 'oss', 'ecs'),
        amountMinor: fc.integer({ min: 0, max: 20_000 }),
        paidMinor: fc.integer({ min: 0, max: 20_000 }),
        dueAt: instant,
      }),
      { selector: (b) => b.id, maxLength: 6 },
    ),
    services: fc.uniqueArray(serviceArb, { selector: (s) => s.id, maxLength: 6 }),
    instances: fc.uniqueArray(
      fc.record({
        id,
        name: fc.constantFrom('Stage A', 'Stage B'),
        streaming: fc.boolean(),
        releaseDueAt: maybeInstant,
        releasedAt: maybeInstant,
      }),
      { selector: (i) => i.id, maxLength: 3 },
    ),
    plans: fc.uniqueArray(
      fc.record({
        id,
        kind: fc.constantFrom('transcoding', 'storage'),
        totalUnits: fc.integer({ min: 0, max: 1_000 }),
        usedUnits: fc.integer({ min: 0, max: 1_200 }),
        startsAt: instant,
        lengthMs: fc.integer({ min: 1, max: 60 * DAY }),
        purchasedAt: instant,
      }),
      { selector: (p) => p.id, maxLength: 4 },
    ),
  })
  .map((r) =>
    account({
      availableBalanceMinor: r.balance,
      lowBalanceThresholdMinor: r.threshold,
      protection: r.protection,
      timeZone: r.zone,
      enforcementState: r.state,
      lastEpisodeSeq: r.episodeOpen ? Math.max(1, r.lastSeq) : r.lastSeq,
      episode: r.episodeOpen ? { seq: Math.max(1, r.lastSeq), startedAt: r.episodeStart } : null,
      lastEpisodeEndedAt: r.lastEnded,
      bills: r.bills,
      services: r.services,
      studioInstances: r.instances.map((i, n) => ({
        ...i,
        serviceId: r.services[n % Math.max(1, r.services.length)]?.id ?? 'svc-x',
      })),
      plans: r.plans.map(({ lengthMs, ...p }) => ({
        ...p,
        expiresAt: plusMs(p.startsAt, lengthMs),
        thresholds: null,
      })),
    }),
  );

const nowArb = fc.integer({ min: -2 * DAY, max: 2 * DAY }).map((ms) => plusMs(T0, ms));

// Thousands of generated cases per property: give them time on a loaded machine.
describe('decide properties', { timeout: 60_000 }, () => {
  it('decide is total: it never throws for any well-formed business state', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        decide(s, now, rules());
      }),
      { numRuns: 2_000 },
    );
  });

  it('R7: no decision resumes a service that only an operator suspended', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        const byId = new Map(s.services.map((x) => [x.id, x]));
        for (const d of decide(s, now, rules())) {
          if (d.kind !== 'resume-services') continue;
          for (const a of d.services) {
            const svc = byId.get(a.serviceId);
            expect(svc?.overdueHold).toBe(true);
            if (svc?.operatorHold) expect(a.callControlPlane).toBe(false);
          }
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('R2/R5: a fully paid account never gets a suspend decision', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        const paid = { ...s, bills: s.bills.map((b) => ({ ...b, paidMinor: b.amountMinor })) };
        expect(overdueMinor(paid.bills, now)).toBe(0);
        const kinds = decide(paid, now, rules()).map((d) => d.kind);
        expect(kinds).not.toContain('suspend-services');
        expect(kinds).not.toContain('suspend-studio');
        expect(kinds).not.toContain('release-studio');
      }),
      { numRuns: 2_000 },
    );
  });

  it('R5/R9: no control-plane call is ever asked for a service an operator holds', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        const byId = new Map(s.services.map((x) => [x.id, x]));
        for (const d of decide(s, now, rules())) {
          if (d.kind !== 'suspend-services' && d.kind !== 'suspend-studio') continue;
          for (const a of d.services) {
            if (byId.get(a.serviceId)?.operatorHold) expect(a.callControlPlane).toBe(false);
          }
        }
      }),
      { numRuns: 1_000 },
    );
  });

  it('every key is free of ":", unique within an evaluation, and decide is deterministic', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        const ds = decide(s, now, rules());
        const keyList = ds.map((d) => d.key);
        expect(keyList.every((k) => !k.includes(':'))).toBe(true);
        expect(new Set(keyList).size).toBe(keyList.length);
        expect(decide(s, now, rules())).toEqual(ds);
      }),
      { numRuns: 1_000 },
    );
  });

  it('a wake is always strictly in the future', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        for (const d of decide(s, now, rules())) {
          if (d.kind === 'wake') expect(d.at.getTime()).toBeGreaterThan(now.getTime());
        }
      }),
      { numRuns: 1_000 },
    );
  });

  it('R10: allocation conserves units and never overdraws a plan', () => {
    fc.assert(
      fc.property(snapshotArb, fc.integer({ min: 0, max: 5_000 }), (s, units) => {
        const a = allocateUsage(s.plans, 'transcoding', units, T0);
        const drawn = a.fromPlans.reduce((n, p) => n + p.units, 0);
        expect(drawn + a.paygUnits).toBe(units);
        for (const p of a.fromPlans) {
          const plan = s.plans.find((x) => x.id === p.planId && x.kind === 'transcoding');
          expect(p.units).toBeLessThanOrEqual((plan?.totalUnits ?? 0) - (plan?.usedUnits ?? 0));
        }
      }),
    );
  });

  it('R9: a studio is released only while its account is still overdue, and after its due instant', () => {
    fc.assert(
      fc.property(snapshotArb, nowArb, (s, now) => {
        for (const d of decide(s, now, rules())) {
          if (d.kind !== 'release-studio') continue;
          expect(overdueMinor(s.bills, now)).toBeGreaterThan(0);
          const inst = s.studioInstances.find((i) => i.id === d.instanceId);
          expect(inst?.releasedAt).toBeNull();
          expect(inst?.releaseDueAt?.getTime()).toBeLessThanOrEqual(now.getTime());
        }
      }),
      { numRuns: 2_000 },
    );
  });
});
