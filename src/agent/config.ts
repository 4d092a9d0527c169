// SPDX-License-Identifier: Apache-2.0
/** The node agent's configuration (a YAML file, flags and the environment), validated. */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { KmError } from '../errors.ts';

export const AgentWorkload = z
  .object({
    name: z.string().min(1),
    namespace: z.string().min(1).default('default'),
    netnsPath: z.string().startsWith('/'),
    cgroupPath: z.string().startsWith('/'),
    labels: z.record(z.string(), z.string()).default({}),
    identity: z.string().optional(),
    excludedPorts: z.array(z.number().int().min(1).max(65535)).default([]),
    excludedCidrs: z.array(z.string()).default([]),
  })
  .strict();

export const AgentConfigSchema = z
  .object({
    node: z.string().min(1),
    mode: z.enum(['ebpf', 'iptables', 'off']).default('ebpf'),
    redis: z.object({ url: z.string().optional(), mesh: z.string().optional(), prefix: z.string().optional() }).strict().default({}),
    cachePath: z.string().default('/var/lib/kernmesh/snapshot.json'),
    pinDir: z.string().default('/sys/fs/bpf/kernmesh'),
    /** The cgroup whose descendants are intercepted (kubepods on a Kubernetes node). */
    attachCgroup: z.string().optional(),
    /** The proxy's own cgroup; default: the agent's. */
    proxyCgroup: z.string().optional(),
    outboundPort: z.number().int().min(1).max(65535).default(15001),
    adminPort: z.number().int().min(0).max(65535).default(15000),
    /** Where this node is, for locality-aware load balancing. */
    zone: z.string().optional(),
    /** Captured workloads (until the Kubernetes watch fills this in). */
    workloads: z.array(AgentWorkload).default([]),
  })
  .strict();

export type AgentConfig = z.output<typeof AgentConfigSchema>;
export type AgentConfigInput = z.input<typeof AgentConfigSchema>;

export function parseAgentConfig(input: unknown, source = 'agent configuration'): AgentConfig {
  const r = AgentConfigSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new KmError('KM_ERR_INVALID_CONFIG', `${source}: ${i?.path.join('.') || '(root)'}: ${i?.message ?? 'invalid'}`, { cause: r.error });
  }
  return r.data;
}

export function readAgentConfig(path: string): AgentConfig {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new KmError('KM_ERR_INVALID_CONFIG', `cannot read the agent configuration ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseAgentConfig(raw, path);
}
