// SPDX-License-Identifier: Apache-2.0
/** The node agent's configuration (a YAML file, flags and the environment), validated. */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse } from 'yaml';
import { z } from 'zod';
import { KmError } from '../errors.ts';
import { positiveDuration } from '../config/model/common.ts';

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
    /** The pod's own addresses (inbound interception matches connections arriving at them). */
    addresses: z.array(z.string()).default([]),
    /** Ports whose arriving connections go through the proxy's inbound listener (eBPF mode). */
    inboundPorts: z.array(z.number().int().min(1).max(65535)).default([]),
  })
  .strict();

export const KubernetesSettings = z
  .object({
    /** Take the captured pods from the Kubernetes API (namespace label, pod annotations). */
    enabled: z.boolean().default(false),
    /** Default: in-cluster service account, else KUBECONFIG or ~/.kube/config. */
    kubeconfig: z.string().optional(),
    /** The host's /proc as mounted in the agent's container (no hostPID needed). */
    procRoot: z.string().startsWith('/').default('/proc'),
    /** Where kubepods is looked for; default: the cgroup2 mount. */
    cgroupRoot: z.string().startsWith('/').optional(),
    /** The kubepods cgroup itself, when it cannot be found. */
    kubepodsCgroup: z.string().startsWith('/').optional(),
  })
  .strict();

export const AgentConfigSchema = z
  .object({
    /** Default: the NODE_NAME environment variable (the downward API in the DaemonSet). */
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
    inboundPort: z.number().int().min(1).max(65535).default(15006),
    adminPort: z.number().int().min(0).max(65535).default(15000),
    /**
     * Proxy worker processes besides the agent's own event loop, each accepting on every pod's listeners:
     * "auto" is one per core. 0 (the default) keeps the proxy in the agent process.
     */
    proxyWorkers: z.union([z.number().int().min(0).max(256), z.literal('auto')]).default(0),
    /**
     * A client connection to the proxy on an HTTP port is closed once idle this long: HTTP/1.1
     * between requests, h2c with no stream open, or never having spoken on a port declared HTTP.
     * A request under way never counts as idle. Default 300s (IDLE_TIMEOUT_MS).
     */
    proxyIdleTimeout: positiveDuration.default('300s'),
    /** /metrics on every address, for Prometheus (the admin port stays on loopback). Off when absent. */
    metricsPort: z.number().int().min(0).max(65535).optional(),
    /** On SIGTERM, detach the programs and remove the pins (a DaemonSet pod going away) instead of leaving them for a restart. */
    detachOnStop: z.boolean().default(false),
    kubernetes: KubernetesSettings.default({ enabled: false, procRoot: '/proc' }),
    /**
     * This node's addresses: a connection from one of them to a pod's inbound port (kubelet's
     * probes) reaches the application directly unless the proxy made it. "auto": the agent's
     * network namespace's addresses (the node's, with hostNetwork).
     */
    nodeAddresses: z.union([z.literal('auto'), z.array(z.string().refine((s) => isIP(s) !== 0, { message: 'must be an IP address' }))]).default('auto'),
    /** Where this node is, for locality-aware load balancing. */
    zone: z.string().optional(),
    /** Captured workloads named in the file (local mode); with kubernetes.enabled, pods come from the API as well. */
    workloads: z.array(AgentWorkload).default([]),
  })
  .strict();

export type AgentConfig = z.output<typeof AgentConfigSchema>;
export type AgentConfigInput = z.input<typeof AgentConfigSchema>;

export function parseAgentConfig(input: unknown, source = 'agent configuration', env: NodeJS.ProcessEnv = process.env): AgentConfig {
  // The node name usually comes from the downward API, not the file.
  const withNode = input && typeof input === 'object' && !('node' in input) && env.NODE_NAME ? { ...input, node: env.NODE_NAME } : input;
  const r = AgentConfigSchema.safeParse(withNode);
  if (!r.success) {
    const i = r.error.issues[0];
    const hint = i?.path[0] === 'node' ? ' (set node in the file or the NODE_NAME environment variable)' : '';
    throw new KmError('KM_ERR_INVALID_CONFIG', `${source}: ${i?.path.join('.') || '(root)'}: ${i?.message ?? 'invalid'}${hint}`, { cause: r.error });
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
