/**
 * The fleet's enforcement modes: `enforce` acts; `shadow` decides and records what it would do
 * without acting; `off` decides nothing.
 */
export const ENFORCEMENT_MODES = ['enforce', 'shadow', 'off'] as const;
export type EnforcementMode = (typeof ENFORCEMENT_MODES)[number];
