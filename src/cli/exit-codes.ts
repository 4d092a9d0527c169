// SPDX-License-Identifier: Apache-2.0
/** Exit codes scripts can rely on (documented in the README). */
import { KmError } from '../errors.ts';

export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  INVALID: 3,
  NOT_FOUND: 4,
  UNREACHABLE: 5,
  HOST: 6,
  /** Another write got in between apply's checks and its write, on every try: nothing was written, and running it again is safe. */
  CONFLICT: 7,
} as const;

export function exitCodeFor(err: unknown): number {
  if (!(err instanceof KmError)) return EXIT.FAILED;
  switch (err.code) {
    case 'KM_ERR_INVALID_CONFIG':
    case 'KM_ERR_INVALID_SPEC':
      return EXIT.INVALID;
    case 'KM_ERR_NOT_FOUND':
      return EXIT.NOT_FOUND;
    case 'KM_ERR_REDIS':
      return EXIT.UNREACHABLE;
    case 'KM_ERR_CONFLICT':
      return EXIT.CONFLICT;
    default:
      return EXIT.HOST;
  }
}
