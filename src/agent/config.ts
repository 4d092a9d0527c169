// SPDX-License-Identifier: Apache-2.0
/** The node agent's configuration (a YAML file, flags and the environment), validated. */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse } from 'yaml';
import { z } from 'zod';
import { KmError } from '../errors.ts';
import { positiveDuration } from '../config/model/common.ts';
import { parseRedisUrl } from '../config/redis.ts';

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

/** A URL connectRedis takes (parseRedisUrl's rules), checked with the rest of the file rather than at the first connection. */
const redisUrl = z.string().superRefine((url, ctx) => {
  try {
    parseRedisUrl(url);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

export const AgentConfigSchema = z
  .object({
    /** Default: the NODE_NAME environment variable (the downward API in the DaemonSet). */
    node: z.string().min(1),
    mode: z.enum(['ebpf', 'iptables', 'off']).default('ebpf'),
    redis: z.object({ url: redisUrl.optional(), mesh: z.string().optional(), prefix: z.string().optional() }).strict().default({}),
    cachePath: z.string().default('/var/lib/kernmesh/snapshot.json'),
    pinDir: z.string().startsWith('/').default('/sys/fs/bpf/kernmesh'),
    /**
     * The cgroup whose descendants are intercepted (ebpf mode): a directory under the cgroup2 mount.
     * On Kubernetes (kubernetes.enabled) the default is the kubepods cgroup, found on the node.
     */
    attachCgroup: z.string().startsWith('/').optional(),
    /** The proxy's own cgroup; default: the agent's. */
    proxyCgroup: z.string().startsWith('/').optional(),
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

/** One problem of an agent configuration: where in it, and what is wrong. */
export interface AgentConfigIssue {
  path: string;
  message: string;
}

/** An agent configuration that cannot be used, with every problem found in it. */
export class InvalidAgentConfigError extends KmError {
  readonly issues: AgentConfigIssue[];
  constructor(source: string, issues: AgentConfigIssue[], cause?: unknown) {
    const lines = issues.map((i) => `${source}: ${i.path || '(root)'}: ${i.message}`);
    super('KM_ERR_INVALID_CONFIG', lines.length === 1 ? lines[0]! : `invalid agent configuration (${lines.length} problems):\n${lines.map((l) => `  ${l}`).join('\n')}`, cause ? { cause } : {});
    this.issues = issues;
  }
}

/**
 * Validates a whole agent configuration and names every problem at once (the
 * schema's and the settings that cannot work together), so that a mistake
 * stops the agent before it connects to Redis or touches the node. Whether
 * the paths exist on this host is checkAgentHost's part (src/agent/preflight.ts).
 */
export function parseAgentConfig(input: unknown, source = 'agent configuration', env: NodeJS.ProcessEnv = process.env): AgentConfig {
  // The node name usually comes from the downward API, not the file.
  const withNode = input && typeof input === 'object' && !('node' in input) && env.NODE_NAME ? { ...input, node: env.NODE_NAME } : input;
  const r = AgentConfigSchema.safeParse(withNode);
  const issues: AgentConfigIssue[] = r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.path[0] === 'node' && i.path.length === 1 ? `${i.message} (set node in the file or the NODE_NAME environment variable)` : i.message }));
  issues.push(...combinationIssues(withNode));
  if (issues.length || !r.success) throw new InvalidAgentConfigError(source, issues, r.error);
  return r.data;
}

/**
 * Settings each valid alone that cannot work together. Read from the raw
 * input with the schema's defaults, so they are found in the same pass as the
 * schema's problems (a field of the wrong type is the schema's to name).
 */
function combinationIssues(input: unknown): AgentConfigIssue[] {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return [];
  const c = input as Record<string, unknown>;
  const out: AgentConfigIssue[] = [];
  const mode = c.mode ?? 'ebpf';
  const kube = c.kubernetes && typeof c.kubernetes === 'object' ? (c.kubernetes as Record<string, unknown>) : {};
  if (mode === 'ebpf' && c.attachCgroup === undefined && kube.enabled !== true) {
    out.push({
      path: 'attachCgroup',
      message: 'ebpf mode needs attachCgroup: the cgroup (under the cgroup2 mount) whose processes are intercepted; on a Kubernetes node set kubernetes.enabled and the kubepods cgroup is used',
    });
  }
  const port = (k: string, fallback?: number) => (typeof c[k] === 'number' ? (c[k] as number) : fallback);
  if (mode === 'ebpf' && port('outboundPort', 15001) === port('inboundPort', 15006)) {
    out.push({ path: 'inboundPort', message: `is outboundPort too (${port('outboundPort', 15001)}): the proxy listens on both in every captured pod; give them different ports` });
  }
  const admin = port('adminPort', 15000);
  const metrics = port('metricsPort');
  if (metrics !== undefined && metrics !== 0 && metrics === admin) {
    out.push({ path: 'metricsPort', message: `is adminPort too (${admin}): both listen on this host; give them different ports` });
  }
  if (Array.isArray(c.workloads)) {
    const seen = new Map<string, number>();
    c.workloads.forEach((w: unknown, i) => {
      if (!w || typeof w !== 'object' || typeof (w as { name?: unknown }).name !== 'string') return;
      const ns = (w as { namespace?: unknown }).namespace ?? 'default';
      const key = `${String(ns)}/${(w as { name: string }).name}`;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else out.push({ path: `workloads.${i}.name`, message: `workload ${key} is also workloads.${first}: each captured workload is named once (namespace and name)` });
    });
  }
  return out;
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
