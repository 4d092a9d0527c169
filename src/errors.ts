// SPDX-License-Identifier: Apache-2.0
/**
 * The error catalogue: every error kernmesh raises on purpose has a literal
 * code here, a message a person can act on, and the low-level error as
 * `cause`. test/unit/errors.test.ts checks that codes are unique and
 * documented.
 */

export const ERROR_CODES = {
  KM_ERR_NATIVE_MISSING: 'the native addon is not built: run `npm run build` (or scripts/bootstrap.sh)',
  KM_ERR_NO_CGROUP2: 'cgroup v2 is not mounted',
  KM_ERR_BPFFS: 'no bpf filesystem could be mounted for pins',
  KM_ERR_CGROUP_NOT_FOUND: 'a cgroup path does not exist',
  KM_ERR_CGROUP_OUTSIDE_ROOT: "a workload's cgroup is not under the cgroup the datapath is attached to",
  KM_ERR_NETNS_NOT_FOUND: 'a network namespace path does not exist',
  KM_ERR_INVALID_SPEC: 'a desired-state value is invalid',
  KM_ERR_MAP_FULL: 'a BPF map is full',
  KM_ERR_AGENT_RUNNING: 'another kernmesh agent already owns this datapath',
  KM_ERR_LOCK: 'the agent lock file could not be created or locked',
  KM_ERR_MAP_UPDATE: 'a BPF map write failed (every earlier write of the same apply was undone)',
  KM_ERR_ATTACH: 'attaching a BPF program failed',
  KM_ERR_LOAD: 'loading the BPF programs failed',
  KM_ERR_IPTABLES: 'an iptables command failed',
  KM_ERR_INVALID_CONFIG: 'a configuration is invalid: a mesh document, the registry file or agent.yaml (every problem named)',
  KM_ERR_NOT_FOUND: 'the named mesh object does not exist',
  KM_ERR_REDIS: 'Redis is unreachable or answered with an error',
  KM_ERR_CONFLICT: 'the mesh changed between the read a write was based on and the write; nothing was written',
  KM_ERR_KUBECONFIG: 'no Kubernetes API configuration could be loaded (in-cluster or kubeconfig)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class KmError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KmError';
    this.code = code;
  }
}

/** The errno code ('EPERM') of a native or Node system error, if any. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
