// SPDX-License-Identifier: Apache-2.0
/** Fault injection: a share of requests delayed, or aborted with a status, on purpose. */
export interface CompiledFault {
  delay?: { percent: number; ms: number };
  abort?: { percent: number; status: number };
}

export function roll(percent: number): boolean {
  return percent >= 100 || (percent > 0 && Math.random() * 100 < percent);
}
