/**
 * Whether a control-plane effect is still wanted when it is claimed, from the state of the service
 * (and studio instance) it is about. Pure: the store reads the state in the claim's statement.
 */

export type EffectOp = 'suspend' | 'resume' | 'release';

export interface EffectTargetState {
  readonly service: {
    readonly status: 'active' | 'suspended' | 'released';
    readonly overdueHold: boolean;
    readonly operatorHold: boolean;
  } | null;
  /** Null when the effect names no instance, or the instance does not exist. */
  readonly instanceReleased: boolean | null;
}

/**
 * Why the effect is no longer wanted, or null to go ahead. A suspend is wanted while a hold
 * (overdue or operator) is on the service; a resume only once neither is; a release only for an
 * instance marked released. A payment that lands after a suspend was decided turns it into a
 * no-op instead of suspending a paid account (its resume, queued behind it, is then a no-op at
 * the control plane too).
 */
export function effectSuperseded(op: EffectOp, target: EffectTargetState): string | null {
  const svc = target.service;
  if (svc === null) return 'service no longer exists';
  const held = svc.overdueHold || svc.operatorHold;
  switch (op) {
    case 'suspend':
      if (svc.status === 'released') return 'service was released';
      return held ? null : 'overdue hold already lifted (paid)';
    case 'resume':
      if (svc.status === 'released') return 'service was released';
      return held ? 'hold placed again' : null;
    case 'release':
      return target.instanceReleased === true ? null : 'instance not marked released';
  }
}
