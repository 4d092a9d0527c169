// SPDX-License-Identifier: Apache-2.0
// Same-node splicing: the proxy (in the scratch namespace, playing the node's)
// dials a pod on this node (a second namespace wired to it by a veth pair);
// both ends of that connection go into the sockhash although their netns
// cookies differ, and sends skip the stack in both directions. Connections
// that do not qualify keep the stack.
//
//   node (scratch netns)  ──veth──  pod netns
//   10.203.0.1, fd00:203::1         10.203.0.2 (listed), 10.203.0.3 (not listed), fd00:203::2
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Server } from 'node:net';
import { type Counters, EbpfDatapath, Scratch, decodeAddrKey, programsStillLoaded } from '../../src/datapath/index.ts';
import { closeServer, listen, runClient } from '../../src/datapath/selftest/run.ts';
import { kernelTest } from './helpers/kernel-test.ts';

const POD = '10.203.0.2';
const POD_UNLISTED = '10.203.0.3';
const POD6 = 'fd00:203::2';
const MARK = 0x539;
const MiB = 1024 * 1024;

interface Line {
  ok: boolean;
  role?: string;
  error?: string;
}

class SameNodeBed {
  readonly scratch = new Scratch('samenode');
  readonly podNs = `${this.scratch.id}-pod`;
  dp!: EbpfDatapath;
  podCgroup = '';
  private programIds: number[] = [];
  private readonly servers: Server[] = [];

  get podNsPath(): string {
    return `/run/netns/${this.podNs}`;
  }

  async start(): Promise<void> {
    const s = this.scratch.setup();
    execFileSync('ip', ['netns', 'add', this.podNs]);
    execFileSync('ip', ['-n', this.podNs, 'link', 'set', 'lo', 'up']);
    const [a, b] = [`kms${process.pid % 10000}a`, `kms${process.pid % 10000}b`];
    s.ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', this.podNs);
    s.ip('addr', 'add', '10.203.0.1/29', 'dev', a);
    s.ip('-6', 'addr', 'add', 'fd00:203::1/64', 'dev', a, 'nodad');
    s.ip('link', 'set', a, 'up');
    const pod = (...args: string[]) => execFileSync('ip', ['-n', this.podNs, ...args]);
    pod('addr', 'add', `${POD}/29`, 'dev', b);
    pod('addr', 'add', `${POD_UNLISTED}/29`, 'dev', b);
    pod('-6', 'addr', 'add', `${POD6}/64`, 'dev', b, 'nodad');
    pod('link', 'set', b, 'up');

    const proxy = s.cgroup('proxy');
    this.podCgroup = s.cgroup('pod');
    s.cgroup('other');
    // A pod whose sockets are outside the attach cgroup (made before this process enters the scratch tree): no sockops there.
    this.servers.push(await listen(this.podNsPath, POD, 81, 'OUTSIDE', () => ({})));
    this.dp = await EbpfDatapath.open({
      pinDir: s.pinDir,
      attachCgroup: s.cgroupRoot,
      lockPath: s.lockPath,
      proxyCgroup: proxy,
      proxyMark: MARK,
      outboundPort: 15001,
      heartbeatTimeoutMs: 600_000,
    });
    this.programIds = Object.values(this.dp.programIds());
    // The pod's application: its listening sockets (and so the accepted ones) are the pod cgroup's.
    s.enter('pod');
    for (const host of [POD, POD_UNLISTED, POD6]) this.servers.push(await listen(this.podNsPath, host, 80, 'POD', () => ({})));
  }

  /** The pod as a captured workload with its addresses (what the agent writes). */
  async enrolPod(extra: { localAddresses?: string[] } = {}): Promise<void> {
    await this.dp.apply({ workloads: [{ name: 'test/pod', netnsPath: this.podNsPath, cgroupPath: this.podCgroup, addresses: [POD] }], ...extra });
  }

  /** The probe client in the node namespace, from a scratch cgroup ('proxy': the proxy's). */
  async send(host: string, port: number, sizes: number[], cgroup = 'proxy', mark?: number): Promise<Line[]> {
    return (await runClient(this.scratch, cgroup, { host, port, sizes, ...(mark ? { mark } : {}) })) as Line[];
  }

  async stop(): Promise<string[]> {
    const problems: string[] = [];
    try {
      await Promise.all(this.servers.splice(0).map(closeServer));
      await this.dp?.close({ detach: true });
    } catch (err) {
      problems.push(`closing: ${(err as Error).message}`);
    } finally {
      try {
        if (existsSync(this.podNsPath)) execFileSync('ip', ['netns', 'del', this.podNs]);
      } catch (err) {
        problems.push(`removing ${this.podNs}: ${(err as Error).message}`);
      }
      problems.push(...(await this.scratch.cleanup()));
    }
    const left = await programsStillLoaded(this.programIds);
    if (left.length) problems.push(`BPF programs still loaded: ${left.join(', ')}`);
    return problems;
  }
}

async function withSameNode(t: ExecutionContext, fn: (bed: SameNodeBed) => Promise<void>): Promise<void> {
  const bed = new SameNodeBed();
  try {
    await bed.start();
    await fn(bed);
  } finally {
    t.deepEqual(await bed.stop(), [], 'the test left state behind');
  }
}

const delta = (a: Counters, b: Counters) => (name: keyof Counters) => b[name] - a[name];

kernelTest('same node: the proxy’s connection to a local pod is spliced across namespaces, both ways; 16 MiB crosses the bulk switch intact', async (t) => {
  await withSameNode(t, async (bed) => {
    await bed.enrolPod();
    t.deepEqual((await bed.dp.dump('km_local_v1')).map(([k]) => decodeAddrKey(k)), [POD]);
    const before = bed.dp.counters();
    const sizes = [1, 64 * 1024, 16 * MiB];
    const lines = await bed.send(POD, 80, sizes);
    t.is(lines.length, 3);
    for (const [i, line] of lines.entries()) t.like(line, { ok: true, role: 'POD' }, `frame of ${sizes[i]} bytes`);
    const d = delta(before, bed.dp.counters());
    t.is(d('sockops_local_active'), 1n, "the proxy's end");
    t.is(d('sockops_local_passive'), 1n, "the pod's end");
    t.is(d('local_left'), 0n, 'no send went through the stack before the peer was spliced');
    t.is(d('msg_miss'), 0n);
    const small = BigInt(sizes[0]! + sizes[1]!);
    const payload = BigInt(sizes.reduce((x, y) => x + y, 0));
    // Request and echo of the small frames are spliced; the bulk frame leaves the splice part-way, in both directions.
    t.true(d('bytes_redirected') >= 2n * small, `bytes_redirected rose by ${d('bytes_redirected')}`);
    t.true(d('bytes_redirected') < 2n * payload, `bulk bytes left the splice: ${d('bytes_redirected')} of ${2n * payload}`);
    // Nothing of the loopback kind happened: this pair is the same-node kind only.
    t.is(d('sockops_active') + d('sockops_passive') + d('connect4_redirected'), 0n);
  });
});

kernelTest('same node: connections that do not qualify keep the stack, and one whose pod end is not spliced still works', async (t) => {
  await withSameNode(t, async (bed) => {
    await bed.enrolPod();
    let before = bed.dp.counters();
    // Not the proxy (another cgroup, no mark), to a listed pod address.
    t.like((await bed.send(POD, 80, [64 * 1024], 'other'))[0], { ok: true, role: 'POD' });
    // The proxy, to an address of the pod the agent did not list.
    t.like((await bed.send(POD_UNLISTED, 80, [64 * 1024]))[0], { ok: true, role: 'POD' });
    let d = delta(before, bed.dp.counters());
    t.is(d('sockops_local_active') + d('sockops_local_passive'), 0n);
    t.is(d('bytes_redirected') + d('msg_redirected'), 0n);

    // The proxy recognised by its mark from any cgroup, as connect4 does.
    before = bed.dp.counters();
    t.like((await bed.send(POD, 80, [64 * 1024], 'other', MARK))[0], { ok: true, role: 'POD' });
    d = delta(before, bed.dp.counters());
    t.is(d('sockops_local_active'), 1n);
    t.is(d('sockops_local_passive'), 1n);
    t.true(d('bytes_redirected') >= 2n * 64n * 1024n);

    // The pod's socket outside the attach cgroup: the proxy's end is spliced, finds no peer, and stays on the stack for good.
    before = bed.dp.counters();
    const lines = await bed.send(POD, 81, [1, 64 * 1024, MiB]);
    for (const line of lines) t.like(line, { ok: true, role: 'OUTSIDE' });
    d = delta(before, bed.dp.counters());
    t.is(d('sockops_local_active'), 1n);
    t.is(d('sockops_local_passive'), 0n);
    t.is(d('msg_miss'), 1n, 'one miss, then the stack for good');
    t.is(d('local_left'), 1n);
    t.is(d('bytes_redirected'), 0n);
  });
});

kernelTest('same node: other local pods listed by address (IPv6 here), and pruned', async (t) => {
  await withSameNode(t, async (bed) => {
    await bed.enrolPod({ localAddresses: [POD6] });
    t.deepEqual((await bed.dp.dump('km_local_v1')).map(([k]) => decodeAddrKey(k)).sort(), [POD, POD6]);
    let before = bed.dp.counters();
    t.like((await bed.send(POD6, 80, [64 * 1024]))[0], { ok: true, role: 'POD' });
    let d = delta(before, bed.dp.counters());
    t.is(d('sockops_local_active'), 1n);
    t.is(d('sockops_local_passive'), 1n);
    t.true(d('bytes_redirected') >= 2n * 64n * 1024n);

    await bed.dp.apply({ workloads: [] });
    t.deepEqual(await bed.dp.dump('km_local_v1'), []);
    before = bed.dp.counters();
    t.like((await bed.send(POD6, 80, [64 * 1024]))[0], { ok: true, role: 'POD' });
    t.like((await bed.send(POD, 80, [64 * 1024]))[0], { ok: true, role: 'POD' });
    d = delta(before, bed.dp.counters());
    t.is(d('sockops_local_active') + d('bytes_redirected'), 0n, 'no longer local pods: not spliced');
  });
});
