// SPDX-License-Identifier: Apache-2.0
/**
 * What lives for the whole bench: a scratch cgroup tree (under the cgroup2
 * mount, never its root), the eBPF datapath attached to one branch of it, a
 * temporary directory for configuration files, and every child process.
 *
 *   <scratch>/ebpf/client   load generators of eBPF runs   ┐
 *   <scratch>/ebpf/proxy    the proxy of eBPF runs         │ the datapath is
 *   <scratch>/ebpf/server   the server pod of eBPF runs    ┘ attached at <scratch>/ebpf
 *   <scratch>/plain/client  load generators of the other runs
 *   <scratch>/plain/proxy   the proxy of iptables runs
 *   <scratch>/plain/server  the server pod of the other runs
 *
 * The server pod of eBPF runs sits under the attach point, where every pod
 * of a node sits under a real agent's (the kubepods tree): its sockets run
 * sockops, so the proxy's connections to it can be spliced (same-node
 * splicing). Direct and iptables runs happen outside the attach point, so no
 * BPF program runs for them at all; the datapath's counters, read around
 * every run, show that (they only move in eBPF runs). The optional no-splice
 * modes get a second scratch tree with a second datapath (loaded with
 * splicing off).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Counters, EbpfDatapath, STAT_NAMES, Scratch, programsStillLoaded, sweepStaleScratch } from '../datapath/index.ts';
import type { Interception } from './modes.ts';
import { Procs } from './procs.ts';
import { PORTS, sweepStaleRunNetns } from './testbed.ts';

export interface RunCgroups {
  client: string;
  proxy: string;
  server: string;
}

interface EbpfSide {
  scratch: Scratch;
  dp?: EbpfDatapath;
  programIds: number[];
  cg: RunCgroups;
}

export class Lab {
  readonly scratch = new Scratch('bench');
  readonly procs = new Procs();
  /** Configuration files of the runs (HAProxy's, the gRPC request body). */
  dir = '';
  private plain!: RunCgroups;
  private readonly ebpf = new Map<'ebpf' | 'ebpf-nosplice', EbpfSide>();

  /** Sweeps what killed benches left, then builds the cgroups and loads a datapath per eBPF interception planned. */
  async setup(interceptions: Set<Interception>, say: (line: string) => void): Promise<void> {
    const removed = [...sweepStaleScratch(), ...sweepStaleRunNetns()];
    if (removed.length) say(`removed leftovers of earlier runs: ${removed.join(', ')}`);
    this.dir = mkdtempSync(join(tmpdir(), 'kernmesh-bench-lab-'));
    const s = this.scratch.setup();
    // Parents before children (Scratch.cgroup makes one level).
    for (const parent of ['ebpf', 'plain']) s.cgroup(parent);
    this.plain = { client: s.cgroup('plain/client'), proxy: s.cgroup('plain/proxy'), server: s.cgroup('plain/server') };
    if (interceptions.has('ebpf')) {
      this.ebpf.set('ebpf', { scratch: s, programIds: [], cg: { client: s.cgroup('ebpf/client'), proxy: s.cgroup('ebpf/proxy'), server: s.cgroup('ebpf/server') } });
    }
    if (interceptions.has('ebpf-nosplice')) {
      // Registered before setup(), so that cleanup() also undoes a setup that failed half-way.
      const side: EbpfSide = { scratch: new Scratch('benchns'), programIds: [], cg: { client: '', proxy: '', server: '' } };
      this.ebpf.set('ebpf-nosplice', side);
      side.scratch.setup();
      side.cg = { client: side.scratch.cgroup('client'), proxy: side.scratch.cgroup('proxy'), server: side.scratch.cgroup('server') };
    }
    for (const [kind, side] of this.ebpf) {
      const attach = kind === 'ebpf' ? join(s.cgroupRoot, 'ebpf') : side.scratch.cgroupRoot;
      side.dp = await EbpfDatapath.open({
        pinDir: side.scratch.pinDir,
        attachCgroup: attach,
        lockPath: side.scratch.lockPath,
        proxyCgroup: side.cg.proxy,
        outboundPort: PORTS.proxy,
        // The bench heartbeats at the start of every eBPF run; a long timeout keeps a
        // busy machine from making the proxy look dead in the middle of one.
        heartbeatTimeoutMs: 3_600_000,
        splice: kind === 'ebpf',
      });
      side.programIds = Object.values(side.dp.programIds());
    }
  }

  cgroups(interception: Interception): RunCgroups {
    if (interception === 'ebpf' || interception === 'ebpf-nosplice') return this.ebpf.get(interception)!.cg;
    return this.plain;
  }

  /** The datapath serving an eBPF interception. */
  datapath(interception: 'ebpf' | 'ebpf-nosplice'): EbpfDatapath {
    const dp = this.ebpf.get(interception)?.dp;
    if (!dp) throw new Error(`no ${interception} datapath is loaded`);
    return dp;
  }

  /** Every loaded datapath's counters, summed (null when none is loaded). */
  counters(): Counters | null {
    const all = [...this.ebpf.values()].flatMap((s) => (s.dp ? [s.dp.counters()] : []));
    if (!all.length) return null;
    return Object.fromEntries(STAT_NAMES.map((n) => [n, all.reduce((a, c) => a + c[n], 0n)])) as Counters;
  }

  /** Ends every child, detaches and unpins the datapaths, removes cgroups, namespaces and files. Returns what was left. */
  async cleanup(): Promise<string[]> {
    const problems: string[] = [];
    try {
      await this.procs.killAll();
    } catch (err) {
      problems.push(`stopping children: ${(err as Error).message}`);
    }
    for (const [kind, side] of this.ebpf) {
      try {
        await side.dp?.close({ detach: true });
      } catch (err) {
        problems.push(`closing the ${kind} datapath: ${(err as Error).message}`);
      }
      side.dp = undefined;
    }
    for (const side of this.ebpf.values()) if (side.scratch !== this.scratch) problems.push(...(await side.scratch.cleanup()));
    problems.push(...(await this.scratch.cleanup()));
    const left = await programsStillLoaded([...this.ebpf.values()].flatMap((s) => s.programIds));
    if (left.length) problems.push(`BPF programs still loaded: ${left.join(', ')}`);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    return problems;
  }
}
