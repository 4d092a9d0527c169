// SPDX-License-Identifier: Apache-2.0
/** Timer lengths as setTimeout can take them. */

/** The longest wait setTimeout honours (2^31-1 ms, 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;

/** ms, cut to what setTimeout honours: a configured "720h" means a long wait, never an immediate one. */
export function timerMs(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}
