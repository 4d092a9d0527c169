// SPDX-License-Identifier: Apache-2.0
/** Terminal marks shared by the commands that report checks. */
export const OK = '✓';
export const WARN = '‼';
export const FAIL = '×';

export function mark(ok: boolean): string {
  return ok ? OK : FAIL;
}
