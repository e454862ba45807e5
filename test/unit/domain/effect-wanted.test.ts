import { describe, expect, it } from 'vitest';
import {
  effectSuperseded,
  type EffectOp,
  type EffectTargetState,
} from '../../../src/domain/effect-wanted';

const svc = (
  status: 'active' | 'suspended' | 'released',
  overdueHold: boolean,
  operatorHold = false,
): EffectTargetState => ({
  service: { status, overdueHold, operatorHold },
  instanceReleased: null,
});

const cases: { name: string; op: EffectOp; target: EffectTargetState; want: string | null }[] = [
  {
    name: 'suspend under an overdue hold goes',
    op: 'suspend',
    target: svc('suspended', true),
    want: null,
  },
  {
    name: 'suspend under an operator hold goes',
    op: 'suspend',
    target: svc('suspended', false, true),
    want: null,
  },
  {
    name: 'suspend after the payment lifted the hold is superseded',
    op: 'suspend',
    target: svc('active', false),
    want: 'overdue hold already lifted (paid)',
  },
  {
    name: 'suspend of a released service is superseded',
    op: 'suspend',
    target: svc('released', true),
    want: 'service was released',
  },
  { name: 'resume with no hold goes', op: 'resume', target: svc('active', false), want: null },
  {
    name: 'resume under a new overdue hold is superseded',
    op: 'resume',
    target: svc('suspended', true),
    want: 'hold placed again',
  },
  {
    name: 'resume under an operator hold is superseded',
    op: 'resume',
    target: svc('suspended', false, true),
    want: 'hold placed again',
  },
  {
    name: 'a missing service supersedes anything',
    op: 'resume',
    target: { service: null, instanceReleased: null },
    want: 'service no longer exists',
  },
  {
    name: 'release of an instance marked released goes',
    op: 'release',
    target: { ...svc('suspended', true), instanceReleased: true },
    want: null,
  },
  {
    name: 'release of an instance not marked released is superseded',
    op: 'release',
    target: { ...svc('suspended', true), instanceReleased: false },
    want: 'instance not marked released',
  },
];

describe('effectSuperseded', () => {
  it.each(cases)('$name', ({ op, target, want }) => {
    expect(effectSuperseded(op, target)).toBe(want);
  });
});
