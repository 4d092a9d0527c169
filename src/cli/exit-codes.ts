// SPDX-License-Identifier: Apache-2.0
/** Exit codes scripts can rely on (documented in the README, with each error code's). */
import { type ErrorCode, KmError } from '../errors.ts';

export const EXIT = {
  OK: 0,
  /** Anything unexpected (a bug, or an error with no code). */
  FAILED: 1,
  /** The command line is wrong: an unknown command or option, a bad option value, a missing choice. */
  USAGE: 2,
  /** A configuration is invalid or missing (mesh documents, the registry, agent.yaml, a Redis URL, a kubeconfig); nothing was written. */
  INVALID: 3,
  NOT_FOUND: 4,
  UNREACHABLE: 5,
  /** The host cannot do it: a kernel feature, a capability (not root), cgroup, bpffs, netns, the BPF programs or maps. */
  HOST: 6,
  /**
   * Another write got in between apply's (or delete's) checks and its write, on every try, or an applied
   * object's `version:` is no longer its version (get it again): nothing was written.
   */
  CONFLICT: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Every error code's exit code: a new code does not compile until it is placed here (and in the README's table). */
export const EXIT_FOR_ERROR: Record<ErrorCode, ExitCode> = {
  KM_ERR_INVALID_CONFIG: EXIT.INVALID,
  KM_ERR_INVALID_SPEC: EXIT.INVALID,
  KM_ERR_KUBECONFIG: EXIT.INVALID,
  KM_ERR_NOT_FOUND: EXIT.NOT_FOUND,
  KM_ERR_REDIS: EXIT.UNREACHABLE,
  KM_ERR_CONFLICT: EXIT.CONFLICT,
  KM_ERR_NATIVE_MISSING: EXIT.HOST,
  KM_ERR_NO_CGROUP2: EXIT.HOST,
  KM_ERR_BPFFS: EXIT.HOST,
  KM_ERR_CGROUP_NOT_FOUND: EXIT.HOST,
  KM_ERR_CGROUP_OUTSIDE_ROOT: EXIT.HOST,
  KM_ERR_NETNS_NOT_FOUND: EXIT.HOST,
  KM_ERR_MAP_FULL: EXIT.HOST,
  KM_ERR_AGENT_RUNNING: EXIT.HOST,
  KM_ERR_LOCK: EXIT.HOST,
  KM_ERR_MAP_UPDATE: EXIT.HOST,
  KM_ERR_ATTACH: EXIT.HOST,
  KM_ERR_LOAD: EXIT.HOST,
  KM_ERR_IPTABLES: EXIT.HOST,
};

/**
 * A failure a command has already explained (printed) and that ends it with
 * a given exit code; main prints nothing more than its message.
 */
export class ExitError extends Error {
  readonly exitCode: ExitCode;

  constructor(exitCode: ExitCode, message: string) {
    super(message);
    this.name = 'ExitError';
    this.exitCode = exitCode;
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof ExitError) return err.exitCode;
  if (!(err instanceof KmError)) return EXIT.FAILED;
  return EXIT_FOR_ERROR[err.code] ?? EXIT.FAILED;
}
