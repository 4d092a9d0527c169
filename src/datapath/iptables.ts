// SPDX-License-Identifier: Apache-2.0
/**
 * The baseline: iptables REDIRECT in each captured workload's network
 * namespace, original destinations from conntrack. Same interface as the
 * eBPF mode, so the agent, the proxy and the benchmark do not care which.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { KmError } from '../errors.ts';
import { type Counters, STAT_NAMES, parseCidr } from './codec.ts';
import { type DesiredState, type DesiredStateInput, parseDesired } from './desired.ts';
import type { ApplyOptions, ApplyResult, Interceptor } from './interceptor.ts';

export interface IptablesOptions {
  outboundPort?: number;
  /** Packets with this mark are the proxy's own and never redirected (0 = none). */
  proxyMark?: number;
  /** Binaries; the default backend is whatever `iptables` is on this host. */
  iptables?: string;
  ip6tables?: string;
}

const CHAIN = 'KERNMESH_OUTPUT';

/** The nat-table rules for one workload, as iptables-restore input. */
export function renderRules(
  family: 4 | 6,
  opts: { outboundPort: number; proxyMark: number },
  excludedPorts: number[],
  excludedCidrs: string[],
): string {
  const lines = ['*nat', `:${CHAIN} - [0:0]`];
  if (opts.proxyMark) lines.push(`-A ${CHAIN} -m mark --mark ${opts.proxyMark} -j RETURN`);
  lines.push(`-A ${CHAIN} -d ${family === 4 ? '127.0.0.0/8' : '::1/128'} -j RETURN`);
  for (const p of excludedPorts) lines.push(`-A ${CHAIN} -p tcp --dport ${p} -j RETURN`);
  for (const c of excludedCidrs) {
    if (parseCidr(c).family === family) lines.push(`-A ${CHAIN} -d ${c} -j RETURN`);
  }
  lines.push(`-A ${CHAIN} -p tcp -j REDIRECT --to-ports ${opts.outboundPort}`, 'COMMIT', '');
  return lines.join('\n');
}

export class IptablesDatapath implements Interceptor {
  readonly mode = 'iptables' as const;
  private readonly opts: Required<IptablesOptions>;
  /** netnsPath -> workload name, for pruning. */
  private readonly installed = new Map<string, string>();

  constructor(options: IptablesOptions = {}) {
    this.opts = {
      outboundPort: options.outboundPort ?? 15001,
      proxyMark: options.proxyMark ?? 0,
      iptables: options.iptables ?? 'iptables',
      ip6tables: options.ip6tables ?? 'ip6tables',
    };
  }

  private run(netnsPath: string, bin: string, args: string[], input?: string): string {
    try {
      return execFileSync('nsenter', [`--net=${netnsPath}`, bin, ...args], {
        input,
        stdio: ['pipe', 'pipe', 'pipe'],
        encoding: 'utf8',
      });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new KmError('KM_ERR_IPTABLES', `${bin} ${args.join(' ')} in ${netnsPath} failed: ${stderr || (err as Error).message}`, { cause: err });
    }
  }

  private install(netnsPath: string, desired: DesiredState, w: DesiredState['workloads'][number]): void {
    const ports = [...desired.excludedPorts, ...w.excludedPorts];
    const cidrs = [...desired.excludedCidrs, ...w.excludedCidrs];
    for (const [family, bin] of [
      [4, this.opts.iptables],
      [6, this.opts.ip6tables],
    ] as const) {
      // Declaring the chain in restore (with --noflush) empties it first: the
      // rules are replaced as a whole, in one transaction per family.
      this.run(netnsPath, `${bin}-restore`, ['--noflush'], renderRules(family, this.opts, ports, cidrs));
      try {
        this.run(netnsPath, bin, ['-t', 'nat', '-C', 'OUTPUT', '-p', 'tcp', '-j', CHAIN]);
      } catch {
        this.run(netnsPath, bin, ['-t', 'nat', '-I', 'OUTPUT', '1', '-p', 'tcp', '-j', CHAIN]);
      }
    }
  }

  private uninstall(netnsPath: string): void {
    if (!existsSync(netnsPath)) return; // the namespace is gone, and its rules with it
    for (const bin of [this.opts.iptables, this.opts.ip6tables]) {
      for (const args of [
        ['-t', 'nat', '-D', 'OUTPUT', '-p', 'tcp', '-j', CHAIN],
        ['-t', 'nat', '-F', CHAIN],
        ['-t', 'nat', '-X', CHAIN],
      ]) {
        try {
          this.run(netnsPath, bin, args);
        } catch {
          /* already gone */
        }
      }
    }
  }

  async apply(input: DesiredStateInput, options: ApplyOptions = {}): Promise<ApplyResult> {
    const desired = parseDesired(input);
    const plan: string[] = [];
    const want = new Map<string, DesiredState['workloads'][number]>();
    for (const w of desired.workloads) {
      if (w.captureBy !== 'netns' || !w.netnsPath) {
        throw new KmError('KM_ERR_INVALID_SPEC', `workload ${w.name}: iptables mode captures by network namespace only`);
      }
      if (!existsSync(w.netnsPath)) {
        throw new KmError('KM_ERR_NETNS_NOT_FOUND', `workload ${w.name}: network namespace ${w.netnsPath} does not exist (has the pod gone?)`);
      }
      want.set(w.netnsPath, w);
      plan.push(`+ ${w.name}: REDIRECT tcp to :${this.opts.outboundPort} in ${w.netnsPath}`);
    }
    const stale = options.prune === false ? [] : [...this.installed.keys()].filter((ns) => !want.has(ns));
    for (const ns of stale) plan.push(`- ${this.installed.get(ns)}: remove rules in ${ns}`);
    if (options.dryRun) return { plan, applied: false };

    for (const [ns, w] of want) {
      // A new namespace that fails half-way is cleaned up; one that had rules keeps its record
      // (iptables-restore replaces a family's chain whole, so its rules are the old or the new).
      const had = this.installed.has(ns);
      this.installed.set(ns, w.name);
      try {
        this.install(ns, desired, w);
      } catch (err) {
        if (!had) {
          this.uninstall(ns);
          this.installed.delete(ns);
        }
        throw err;
      }
    }
    for (const ns of stale) {
      this.uninstall(ns);
      this.installed.delete(ns);
    }
    return { plan, applied: true };
  }

  heartbeat(): void {
    /* iptables rules have no notion of proxy liveness: they always redirect */
  }

  counters(): Counters {
    return Object.fromEntries(STAT_NAMES.map((n) => [n, 0n])) as Counters;
  }

  async close(options: { detach?: boolean } = {}): Promise<void> {
    if (!options.detach) return;
    for (const ns of this.installed.keys()) this.uninstall(ns);
    this.installed.clear();
  }
}
