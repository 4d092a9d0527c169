// SPDX-License-Identifier: Apache-2.0
/**
 * The kernel tests' testbed: a Scratch (child cgroup tree, netns with VIPs on
 * its own loopback, per-run pins), the eBPF datapath attached to it, this
 * process playing the proxy from the scratch "proxy" cgroup, and backends on
 * the VIPs so that a connect that is NOT redirected can be told apart.
 */
import type { ExecutionContext } from 'ava';
import type { Server } from 'node:net';
import { EbpfDatapath, type EbpfOptions, Scratch, programsStillLoaded } from '../../../src/datapath/index.ts';
import { closeServer, describeOriginalDst, listen, runClient } from '../../../src/datapath/selftest/run.ts';

export const VIP4 = '10.96.0.10';
export const VIP6 = 'fd00:96::10';
/** A second service range, used for CIDR exclusions. */
export const VIP4_OTHER = '10.97.0.20';
export const PROXY_PORT = 15001;

export interface ClientResult {
  ok: boolean;
  role?: string;
  info?: { address?: string; port?: number; family?: string; error?: string };
  bytes?: number;
  error?: string;
  code?: string;
  stage?: string;
}

export class Bed {
  readonly scratch: Scratch;
  dp!: EbpfDatapath;
  readonly servers: Server[] = [];
  programIds: number[] = [];
  appCgroup = '';
  proxyCgroup = '';

  constructor(purpose: string) {
    this.scratch = new Scratch(purpose);
  }

  options(extra: Partial<EbpfOptions> = {}): EbpfOptions {
    return {
      pinDir: this.scratch.pinDir,
      attachCgroup: this.scratch.cgroupRoot,
      lockPath: this.scratch.lockPath,
      proxyCgroup: this.proxyCgroup,
      outboundPort: PROXY_PORT,
      // Generous: a busy shared machine must not make the proxy look dead mid-test.
      heartbeatTimeoutMs: 600_000,
      ...extra,
    };
  }

  async start(extra: Partial<EbpfOptions> = {}): Promise<this> {
    this.scratch.setup();
    for (const vip of [VIP4, VIP6, VIP4_OTHER]) this.scratch.addVip(vip);
    this.proxyCgroup = this.scratch.cgroup('proxy');
    this.appCgroup = this.scratch.cgroup('app');
    this.dp = await EbpfDatapath.open(this.options(extra));
    this.programIds = Object.values(this.dp.programIds());
    this.scratch.enter('proxy');
    const ns = this.scratch.netnsPath;
    this.servers.push(
      await listen(ns, '127.0.0.1', PROXY_PORT, 'PROXY', describeOriginalDst),
      await listen(ns, '::1', PROXY_PORT, 'PROXY', describeOriginalDst),
      await listen(ns, VIP4, 80, 'BACKEND', () => ({})),
      await listen(ns, VIP6, 80, 'BACKEND', () => ({})),
      await listen(ns, VIP4, 9999, 'BACKEND', () => ({})),
      await listen(ns, VIP4_OTHER, 80, 'BACKEND', () => ({})),
    );
    this.dp.heartbeat();
    return this;
  }

  /** Enrols the scratch app cgroup+netns as the one captured workload. */
  async captureApp(extra: Record<string, unknown> = {}, globals: Record<string, unknown> = {}): Promise<void> {
    await this.dp.apply({
      workloads: [{ name: 'test/app', netnsPath: this.scratch.netnsPath, cgroupPath: this.appCgroup, ...extra }],
      ...globals,
    });
  }

  /** Runs the probe client in a scratch cgroup (inside the netns); returns its first line. */
  async client(args: { host: string; port: number; sizes?: number[]; mark?: number }, cgroup = 'app'): Promise<ClientResult> {
    const lines = await runClient(this.scratch, cgroup, args);
    return lines[0] as ClientResult;
  }

  /** Tears everything down; returns what was left behind (should be nothing). */
  async stop(): Promise<string[]> {
    const problems: string[] = [];
    try {
      await Promise.all(this.servers.splice(0).map(closeServer));
      if (this.dp) await this.dp.close({ detach: true });
    } catch (err) {
      problems.push(`closing: ${(err as Error).message}`);
    } finally {
      problems.push(...(await this.scratch.cleanup()));
    }
    const left = await programsStillLoaded(this.programIds);
    if (left.length) problems.push(`BPF programs still loaded: ${left.join(', ')}`);
    return problems;
  }
}

/** start(), run fn, and always stop(); asserts that nothing was left behind. */
export async function withBed(t: ExecutionContext, fn: (bed: Bed) => Promise<void>, extra: Partial<EbpfOptions> = {}): Promise<void> {
  const bed = new Bed('test');
  try {
    await bed.start(extra);
    await fn(bed);
  } finally {
    const problems = await bed.stop();
    t.deepEqual(problems, [], 'the test left state behind');
  }
}
