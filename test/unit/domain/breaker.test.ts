import { describe, expect, it } from 'vitest';
import {
  admit,
  breakerLimit,
  gateDecisions,
  gateRequests,
  type BreakerView,
  type GateRequest,
  type LedgerStatus,
} from '../../../src/domain/breaker';
import type { Decision, Notice } from '../../../src/domain/decisions';

const notice: Notice = { template: 'suspended', channels: ['email'], params: {} };
const suspend = (key: string, serviceIds: string[]): Decision => ({
  kind: 'suspend-services',
  key,
  episodeSeq: 1,
  overdueMinor: 100,
  cause: { products: ['live'], otherProducts: [], limit: 'amount' },
  services: serviceIds.map((id) => ({
    serviceId: id,
    key: `${key}-${id}`,
    callControlPlane: true,
  })),
  notice,
});
const studio = (key: string, serviceId: string): Decision => ({
  kind: 'suspend-studio',
  key,
  episodeSeq: 1,
  overdueMinor: 100,
  services: [{ serviceId, key: `${key}-svc`, callControlPlane: true }],
  notice: { ...notice, template: 'studio-suspended' },
});
const release = (key: string): Decision => ({
  kind: 'release-studio',
  key,
  episodeSeq: 1,
  instanceId: 'inst-1',
  serviceId: 'studio-svc',
  notice: { ...notice, template: 'studio-released' },
});
const req = (key: string, kind: GateRequest['kind'] = 'suspend'): GateRequest => ({
  key,
  accountId: `a-${key}`,
  kind,
  detail: {},
});
const view = (v: Partial<BreakerView> = {}): BreakerView => ({
  enabled: true,
  tripped: false,
  limit: 2,
  admitted: 0,
  ...v,
});

describe('breaker limit', () => {
  it('is the larger of the count and the share of accounts in good standing', () => {
    const limits = { count: 100, windowMs: 600_000, sharePct: 1 };
    expect(breakerLimit(limits, 5_000)).toBe(100);
    expect(breakerLimit(limits, 1_000_000)).toBe(10_000);
    expect(breakerLimit(limits, 10_001)).toBe(101);
    expect(breakerLimit({ ...limits, sharePct: 0 }, 1_000_000)).toBe(100);
  });
});

describe('admit', () => {
  it('admits up to the limit, holds the rest and trips once', () => {
    const a = admit(view({ admitted: 1 }), [req('s1'), req('s2'), req('s3')], new Map());
    expect([...a.verdicts]).toEqual([
      ['s1', 'go'],
      ['s2', 'held'],
      ['s3', 'held'],
    ]);
    expect(a.rows.map((r) => [r.key, r.status])).toEqual([
      ['s1', 'allowed'],
      ['s2', 'held'],
      ['s3', 'held'],
    ]);
    expect(a.trips).toBe(true);
  });

  it('a tripped breaker holds every new suspension and release, even under the limit', () => {
    const a = admit(view({ tripped: true }), [req('r1', 'release'), req('s1')], new Map());
    expect(a.verdicts.get('s1')).toBe('held');
    expect(a.verdicts.get('r1')).toBe('held');
    expect(a.trips).toBe(false);
  });

  it('releases go while closed, without a ledger row; a suspension that trips holds them', () => {
    expect(admit(view(), [req('r1', 'release')], new Map())).toMatchObject({
      rows: [],
      trips: false,
    });
    const a = admit(view({ admitted: 2 }), [req('r1', 'release'), req('s1')], new Map());
    expect(a.verdicts.get('r1')).toBe('held');
    expect(a.trips).toBe(true);
  });

  it('a key already in the ledger keeps its verdict and is not counted again', () => {
    const known = new Map<string, LedgerStatus>([
      ['a', 'allowed'],
      ['b', 'approved'],
      ['c', 'held'],
      ['d', 'rejected'],
    ]);
    const a = admit(
      view({ admitted: 2, tripped: true }),
      ['a', 'b', 'c', 'd'].map((k) => req(k)),
      known,
    );
    expect(Object.fromEntries(a.verdicts)).toEqual({
      a: 'go',
      b: 'go',
      c: 'held',
      d: 'rejected',
    });
    expect(a.rows).toEqual([]);
  });

  it('off: new decisions go, uncounted; held and rejected ones stay so', () => {
    const known = new Map<string, LedgerStatus>([['c', 'held']]);
    const a = admit(view({ enabled: false, admitted: 99 }), [req('s1'), req('c')], known);
    expect(Object.fromEntries(a.verdicts)).toEqual({ s1: 'go', c: 'held' });
    expect(a.rows).toEqual([]);
  });
});

describe('gateRequests and gateDecisions', () => {
  const decisions: Decision[] = [
    { kind: 'open-episode', key: 'open', episodeSeq: 1, startedAt: new Date(0) },
    suspend('susp', ['live-1']),
    studio('stud', 'studio-svc'),
    {
      kind: 'schedule-release',
      key: 'timer',
      episodeSeq: 1,
      instanceId: 'inst-1',
      dueAt: new Date(1),
    },
    { kind: 'set-state', key: 'state', from: 'active', to: 'suspended' },
    release('rel'),
  ];

  it('gates suspensions of at least one service and studio releases', () => {
    expect(gateRequests('a1', [...decisions, suspend('none', [])]).map((r) => r.key)).toEqual([
      'susp',
      'stud',
      'rel',
    ]);
  });

  it('everything goes: the decisions are unchanged', () => {
    const g = gateDecisions(decisions, () => 'go', new Map([['inst-1', 'studio-svc']]));
    expect(g.decisions).toBe(decisions);
    expect(g.stopped).toEqual([]);
  });

  it('a stopped suspension takes its state change and its studio timers with it', () => {
    const g = gateDecisions(
      decisions,
      (key) => (key === 'susp' || key === 'stud' ? 'held' : key === 'rel' ? 'rejected' : 'go'),
      new Map([['inst-1', 'studio-svc']]),
    );
    expect(g.decisions.map((d) => d.kind)).toEqual(['open-episode', 'set-state']);
    expect(g.decisions[1]).toMatchObject({ from: 'active', to: 'protected', key: 'state-held' });
    expect(g.stopped).toEqual([
      { key: 'susp', verdict: 'held' },
      { key: 'stud', verdict: 'held' },
      { key: 'rel', verdict: 'rejected' },
    ]);
  });

  it('a held studio suspension leaves the live suspension and its state change alone', () => {
    const g = gateDecisions(
      decisions,
      (key) => (key === 'stud' ? 'held' : 'go'),
      new Map([['inst-1', 'studio-svc']]),
    );
    expect(g.decisions.map((d) => d.key)).toEqual(['open', 'susp', 'state', 'rel']);
  });
});
