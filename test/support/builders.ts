import { DEFAULT_RULES, type RuleSettings } from '../../src/domain/rules';
import type {
  AccountSnapshot,
  BillSnapshot,
  PlanSnapshot,
  ServiceSnapshot,
  StudioInstanceSnapshot,
} from '../../src/domain/snapshot';

/** Builders of domain snapshots for unit tests: sensible defaults, override what a case needs. */

export const T0 = new Date('2026-03-02T10:00:00.000Z');

export function at(iso: string): Date {
  return new Date(iso);
}

export function plusMs(d: Date, ms: number): Date {
  return new Date(d.getTime() + ms);
}

export function rules(over: Partial<RuleSettings> = {}): RuleSettings {
  return { ...DEFAULT_RULES, ...over };
}

export function account(over: Partial<AccountSnapshot> = {}): AccountSnapshot {
  return {
    accountId: 'acct-1',
    currency: 'USD',
    timeZone: 'UTC',
    locale: 'en',
    availableBalanceMinor: 1_000_000,
    lowBalanceThresholdMinor: null,
    protection: null,
    channels: ['email', 'sms'],
    enforcementState: 'active',
    episode: null,
    lastEpisodeSeq: 0,
    lastEpisodeEndedAt: null,
    planThresholds: null,
    bills: [],
    services: [],
    studioInstances: [],
    plans: [],
    ...over,
  };
}

export function bill(over: Partial<BillSnapshot> = {}): BillSnapshot {
  return {
    id: 'bill-1',
    product: 'live',
    amountMinor: 1_000,
    paidMinor: 0,
    dueAt: plusMs(T0, -3_600_000),
    ...over,
  };
}

export function service(over: Partial<ServiceSnapshot> = {}): ServiceSnapshot {
  return {
    id: 'svc-stream',
    kind: 'streaming',
    planType: 'payg',
    status: 'active',
    overdueHold: false,
    operatorHold: false,
    ...over,
  };
}

/** The three R5 live services, all active. */
export function liveServices(): ServiceSnapshot[] {
  return [
    service({ id: 'svc-stream', kind: 'streaming' }),
    service({ id: 'svc-rec', kind: 'recording' }),
    service({ id: 'svc-shot', kind: 'screenshots' }),
  ];
}

export function studio(over: Partial<ServiceSnapshot> = {}): ServiceSnapshot {
  return service({ id: 'svc-studio', kind: 'studio', planType: 'duration', ...over });
}

export function instance(over: Partial<StudioInstanceSnapshot> = {}): StudioInstanceSnapshot {
  return {
    id: 'inst-1',
    serviceId: 'svc-studio',
    name: 'Main stage',
    streaming: false,
    releaseDueAt: null,
    releasedAt: null,
    ...over,
  };
}

export function plan(over: Partial<PlanSnapshot> = {}): PlanSnapshot {
  return {
    id: 'plan-1',
    kind: 'transcoding',
    totalUnits: 1_000,
    usedUnits: 0,
    startsAt: plusMs(T0, -10 * 86_400_000),
    expiresAt: plusMs(T0, 20 * 86_400_000),
    purchasedAt: plusMs(T0, -10 * 86_400_000),
    thresholds: null,
    ...over,
  };
}
