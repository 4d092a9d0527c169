// SPDX-License-Identifier: Apache-2.0
/**
 * One run's network: three fresh network namespaces wired like pods on a
 * Kubernetes node. Fresh for every run, because sockets in TIME_WAIT (and
 * conntrack entries) left by one run skew the next.
 *
 *   client pod (C) ──veth── node (N) ──veth── server pod (S)
 *   10.201.0.2      10.201.0.1  10.201.0.5     10.201.0.6, VIP on lo
 *
 * The client dials the Service VIP. With no mesh, N routes it to S, which
 * holds the VIP on its loopback (the physical limit: no proxy, no NAT). With
 * a mesh, the VIP connect is steered to the proxy's listener on 127.0.0.1
 * inside C (iptables REDIRECT or eBPF connect4); the proxy process lives in
 * N, like the node agent, and dials the server pod's address from there.
 * Every address exists only inside these namespaces: nothing is routed
 * through the host's own.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

export const ADDR = {
  vip: '10.96.60.10',
  client: '10.201.0.2',
  nodeClientSide: '10.201.0.1',
  nodeServerSide: '10.201.0.5',
  server: '10.201.0.6',
} as const;

/** Service ports (the server listens on the same ports) and the proxy's outbound listener. */
export const PORTS = { http: 80, grpc: 9000, bulk: 5201, proxy: 15001 } as const;

export type Pod = 'client' | 'node' | 'server';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const NETNS_DIR = '/run/netns';

export class Testbed {
  readonly names: Record<Pod, string>;
  private made: string[] = [];

  /** prefix: the bench's scratch id; run: this run's number (names stay unique and sweepable). */
  constructor(prefix: string, run: number) {
    this.names = { client: `${prefix}-${run}-c`, node: `${prefix}-${run}-n`, server: `${prefix}-${run}-s` };
  }

  path(pod: Pod): string {
    return `${NETNS_DIR}/${this.names[pod]}`;
  }

  create(): this {
    for (const pod of ['client', 'node', 'server'] as const) {
      ip('netns', 'add', this.names[pod]);
      this.made.push(this.names[pod]);
      ip('-n', this.names[pod], 'link', 'set', 'lo', 'up');
    }
    const { client: c, node: n, server: s } = this.names;
    // Both veth ends are created from inside N: no interface ever appears in the host's namespace.
    ip('-n', n, 'link', 'add', 'c0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c);
    ip('-n', n, 'link', 'add', 's0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', s);
    ip('-n', n, 'addr', 'add', `${ADDR.nodeClientSide}/30`, 'dev', 'c0');
    ip('-n', n, 'addr', 'add', `${ADDR.nodeServerSide}/30`, 'dev', 's0');
    ip('-n', n, 'link', 'set', 'c0', 'up');
    ip('-n', n, 'link', 'set', 's0', 'up');
    ip('-n', n, 'route', 'add', `${ADDR.vip}/32`, 'via', ADDR.server);
    ip('-n', c, 'addr', 'add', `${ADDR.client}/30`, 'dev', 'eth0');
    ip('-n', c, 'link', 'set', 'eth0', 'up');
    ip('-n', c, 'route', 'add', 'default', 'via', ADDR.nodeClientSide);
    ip('-n', s, 'addr', 'add', `${ADDR.server}/30`, 'dev', 'eth0');
    ip('-n', s, 'addr', 'add', `${ADDR.vip}/32`, 'dev', 'lo');
    ip('-n', s, 'link', 'set', 'eth0', 'up');
    ip('-n', s, 'route', 'add', 'default', 'via', ADDR.nodeServerSide);
    // N forwards between the pods, like a node; the setting is N's own (per-namespace sysctl).
    execFileSync('nsenter', [`--net=${this.path('node')}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'], { stdio: 'pipe' });
    return this;
  }

  /** Removes the namespaces (their veths go with them); returns what could not be removed. */
  destroy(): string[] {
    const problems: string[] = [];
    for (const name of this.made.splice(0).reverse()) {
      try {
        if (existsSync(`${NETNS_DIR}/${name}`)) ip('netns', 'del', name);
      } catch (err) {
        problems.push(`netns ${name}: ${(err as Error).message}`);
      }
    }
    return problems;
  }
}

/** A bench's per-run namespaces: kernmesh-bench-<pid>-<n>-<run>-<c|n|s>. */
const RUN_NETNS = /^kernmesh-bench-(\d+)-\d+-\d+-[cns]$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the run namespaces of bench processes that died without cleaning up (SIGKILL). */
export function sweepStaleRunNetns(): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(NETNS_DIR)) {
    const m = RUN_NETNS.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      ip('netns', 'del', name);
      removed.push(`netns ${name}`);
    } catch (err) {
      removed.push(`netns ${name} (failed: ${(err as Error).message})`);
    }
  }
  return removed;
}
