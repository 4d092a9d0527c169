// SPDX-License-Identifier: Apache-2.0
/**
 * The modes the bench compares: how a client's connection reaches the
 * server (interception) and what sits in the middle (engine).
 */

/** ebpf-nosplice: connect4 and getsockopt only (the datapath's splice option off), to see what splicing costs and gains. */
export type Interception = 'none' | 'iptables' | 'ebpf' | 'ebpf-nosplice';
/** kernmesh-http: our proxy at L7 (HTTP/1.1, h2c/gRPC); kernmesh-tcp: our proxy as an opaque TCP pipe. */
export type Engine = 'none' | 'kernmesh-http' | 'kernmesh-tcp' | 'haproxy';

export interface Mode {
  name: string;
  interception: Interception;
  engine: Engine;
  description: string;
  /** Not run unless asked for with --modes. */
  optional?: boolean;
  /**
   * eBPF runs: whether the server pod's address is given to the datapath as
   * a local pod's, so that the proxy's connection to it is spliced too
   * (same-node splicing). Default true; false shows the loopback pair alone.
   */
  sameNode?: boolean;
}

export const isEbpf = (i: Interception) => i === 'ebpf' || i === 'ebpf-nosplice';

export const MODES: readonly Mode[] = [
  { name: 'direct', interception: 'none', engine: 'none', description: 'no mesh: the client dials the server, routed through the node namespace' },
  { name: 'iptables', interception: 'iptables', engine: 'kernmesh-http', description: 'iptables REDIRECT in the client netns to our proxy (L7), original destination from conntrack' },
  { name: 'ebpf', interception: 'ebpf', engine: 'kernmesh-http', description: 'eBPF connect4 + sockops + sk_msg to our proxy (L7), original destination from cgroup/getsockopt' },
  { name: 'iptables-tcp', interception: 'iptables', engine: 'kernmesh-tcp', description: 'iptables REDIRECT to our proxy with every port declared tcp (opaque pipe)' },
  { name: 'ebpf-tcp', interception: 'ebpf', engine: 'kernmesh-tcp', description: 'eBPF redirect to our proxy with every port declared tcp (opaque pipe)' },
  { name: 'iptables-haproxy', interception: 'iptables', engine: 'haproxy', description: 'iptables REDIRECT to HAProxy (nbthread 1) with a fixed backend' },
  { name: 'ebpf-haproxy', interception: 'ebpf', engine: 'haproxy', description: 'eBPF redirect to HAProxy (nbthread 1) with a fixed backend' },
  { name: 'ebpf-nosplice', interception: 'ebpf-nosplice', engine: 'kernmesh-http', description: 'eBPF connect4 redirect to our proxy (L7) without sockops/sk_msg splicing', optional: true },
  { name: 'ebpf-nosplice-haproxy', interception: 'ebpf-nosplice', engine: 'haproxy', description: 'eBPF connect4 redirect to HAProxy without sockops/sk_msg splicing', optional: true },
  { name: 'ebpf-loopback', interception: 'ebpf', engine: 'kernmesh-http', description: 'eBPF to our proxy (L7), splicing the app<->proxy loopback pair only, not the proxy<->server pod one', optional: true, sameNode: false },
  { name: 'ebpf-loopback-haproxy', interception: 'ebpf', engine: 'haproxy', description: 'eBPF to HAProxy, splicing the app<->proxy loopback pair only', optional: true, sameNode: false },
];

export const MODE_NAMES = MODES.map((m) => m.name);
/** What runs when --modes is not given: the seven. */
export const DEFAULT_MODES = MODES.filter((m) => !m.optional).map((m) => m.name);

export function modeByName(name: string): Mode {
  const m = MODES.find((x) => x.name === name);
  if (!m) throw new Error(`unknown mode ${name} (known: ${MODE_NAMES.join(', ')})`);
  return m;
}

/** The pairs whose ratios the report shows: eBPF over iptables with the same engine. */
export const PAIRS: ReadonlyArray<{ engine: string; ebpf: string; iptables: string }> = [
  { engine: 'kernmesh', ebpf: 'ebpf', iptables: 'iptables' },
  { engine: 'kernmesh-tcp', ebpf: 'ebpf-tcp', iptables: 'iptables-tcp' },
  { engine: 'haproxy', ebpf: 'ebpf-haproxy', iptables: 'iptables-haproxy' },
  { engine: 'kernmesh-nosplice', ebpf: 'ebpf-nosplice', iptables: 'iptables' },
  { engine: 'haproxy-nosplice', ebpf: 'ebpf-nosplice-haproxy', iptables: 'iptables-haproxy' },
  { engine: 'kernmesh-loopback', ebpf: 'ebpf-loopback', iptables: 'iptables' },
  { engine: 'haproxy-loopback', ebpf: 'ebpf-loopback-haproxy', iptables: 'iptables-haproxy' },
];

/** Colours for the charts, one per mode: greys for no mesh, warm for iptables, cool for eBPF. */
export const MODE_COLORS: Record<string, string> = {
  direct: '#6b7280',
  iptables: '#c2410c',
  'iptables-tcp': '#fb923c',
  'iptables-haproxy': '#92400e',
  ebpf: '#1d4ed8',
  'ebpf-tcp': '#60a5fa',
  'ebpf-haproxy': '#0f766e',
  'ebpf-nosplice': '#7c3aed',
  'ebpf-nosplice-haproxy': '#c026d3',
  'ebpf-loopback': '#0891b2',
  'ebpf-loopback-haproxy': '#4d7c0f',
};
