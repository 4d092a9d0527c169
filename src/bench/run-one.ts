// SPDX-License-Identifier: Apache-2.0
/**
 * One run: fresh namespaces, the server pod, the engine, the interception,
 * a warm-up, the measured workload with CPU and counters read around it,
 * then everything of the run taken down again, whatever happened.
 */
import { type Counters, type EbpfDatapath, IptablesDatapath, STAT_NAMES } from '../datapath/index.ts';
import { type EngineHandle, type Running, startEngine, startServer } from './engines.ts';
import type { Lab } from './lab.ts';
import { type MachineCpu, cgroupCpuUsec, iptablesRedirects, machineCpu } from './measure.ts';
import { type Mode, isEbpf } from './modes.ts';
import type { BenchOptions } from './options.ts';
import { ADDR, PORTS, Testbed } from './testbed.ts';
import type { Workload, WorkloadContext, WorkloadName } from './workloads/index.ts';

export interface RunRecord {
  round: number;
  mode: string;
  workload: WorkloadName;
  started_at: string;
  ok: boolean;
  error?: string;
  /** Named figures of the workload, plus the derived cost figures (CPU per 1 000 requests, per GB). */
  metrics: Record<string, number>;
  requests?: number;
  bytes?: number;
  curve?: Array<[number, number]>;
  cpu: {
    wall_s: number;
    /** CPU seconds of the proxy's cgroup in the measured window (null: no proxy). */
    proxy_s: number | null;
    server_s: number;
    /** The load generator's cgroup. */
    client_s: number;
    /** The whole machine (/proc/stat), every process of every tenant included. */
    machine_s: number;
  } | null;
  proxy_peak_rss_mb: number | null;
  /** Evidence of interception in the measured window. */
  redirects: {
    /** The eBPF datapath's counters (deltas), when it is loaded. */
    ebpf: Partial<Record<(typeof STAT_NAMES)[number], number>> | null;
    /** Connections REDIRECTed by iptables (iptables runs). */
    iptables: number | null;
    /** Connections our proxy accepted over the whole run, warm-up included. */
    proxy_connections: number | null;
  };
}

interface Snapshot {
  at: number;
  proxy: number;
  server: number;
  client: number;
  machine: MachineCpu;
  counters: Counters | null;
  iptables: number | null;
}

function snapshot(lab: Lab, mode: Mode, bed: Testbed): Snapshot {
  const cg = lab.cgroups(mode.interception);
  return {
    at: performance.now(),
    proxy: cgroupCpuUsec(cg.proxy),
    server: cgroupCpuUsec(cg.server),
    client: cgroupCpuUsec(cg.client),
    machine: machineCpu(),
    counters: lab.counters(),
    iptables: mode.interception === 'iptables' ? iptablesRedirects(bed.path('client')) : null,
  };
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

function counterDelta(a: Counters | null, b: Counters | null): RunRecord['redirects']['ebpf'] {
  if (!a || !b) return null;
  return Object.fromEntries(STAT_NAMES.map((n) => [n, Number(b[n] - a[n])]));
}

/** Refuses a run whose traffic did not take the path its mode names. */
function checkPath(mode: Mode, rec: RunRecord): void {
  const e = rec.redirects.ebpf;
  if (isEbpf(mode.interception)) {
    if (!e?.connect4_redirected) throw new Error('an eBPF run, but connect4 redirected nothing');
    if (e.fail_open || e.fail_closed) throw new Error(`the datapath thought the proxy dead (fail_open ${e.fail_open}, fail_closed ${e.fail_closed})`);
  } else if (e && (e.connect4_redirected || e.msg_redirected)) {
    throw new Error(`a ${mode.name} run, but the eBPF datapath redirected (${e.connect4_redirected} connects, ${e.msg_redirected} messages)`);
  }
  if (mode.interception === 'iptables' && !rec.redirects.iptables) throw new Error('an iptables run, but iptables redirected nothing');
}

export async function runOne(lab: Lab, opts: BenchOptions, mode: Mode, workload: Workload, round: number, runNo: number): Promise<RunRecord> {
  const rec: RunRecord = {
    round,
    mode: mode.name,
    workload: workload.name,
    started_at: new Date().toISOString(),
    ok: false,
    metrics: {},
    cpu: null,
    proxy_peak_rss_mb: null,
    redirects: { ebpf: null, iptables: null, proxy_connections: null },
  };
  const bed = new Testbed(lab.scratch.id, runNo);
  const cg = lab.cgroups(mode.interception);
  const capture = { name: 'bench/client', netnsPath: bed.path('client'), cgroupPath: cg.client };
  let server: Running | undefined;
  let engine: EngineHandle | undefined;
  let iptables: IptablesDatapath | undefined;
  let dp: EbpfDatapath | undefined;
  const problems: string[] = [];
  try {
    bed.create();
    server = await startServer(lab, bed, mode, workload.service);
    // The listener first, then interception (as the agent does): nothing is steered to a proxy that is not there.
    if (mode.engine !== 'none') engine = await startEngine(lab, bed, mode, workload.service);
    if (mode.interception === 'iptables') {
      iptables = new IptablesDatapath({ outboundPort: PORTS.proxy });
      await iptables.apply({ workloads: [capture] });
    } else if (mode.interception === 'ebpf' || mode.interception === 'ebpf-nosplice') {
      // Fail closed: a proxy the datapath thinks dead makes the run fail loudly instead of quietly measuring the direct path.
      dp = lab.datapath(mode.interception);
      // The server pod is on this node: the proxy's connections to it are spliced (when splicing is on).
      await dp.apply({ workloads: [capture], failMode: 'closed', localAddresses: mode.sameNode === false ? [] : [ADDR.server] });
      dp.heartbeat();
    }
    const ctx: WorkloadContext = {
      seconds: opts.seconds,
      warmupSeconds: opts.warmupSeconds,
      connections: opts.connections,
      rate: opts.rate,
      loadedRate: opts.loadedRate,
      idlePoll: opts.idlePoll,
      dir: lab.dir,
      client: (name, cmd, args, timeoutMs) => lab.procs.run(name, cg.client, bed.path('client'), cmd, args, timeoutMs),
    };
    await workload.warmup(ctx);
    const before = snapshot(lab, mode, bed);
    const result = await workload.run(ctx);
    const after = snapshot(lab, mode, bed);
    rec.proxy_peak_rss_mb = engine ? engine.peakRssMb() : null;
    rec.cpu = {
      wall_s: r3((after.at - before.at) / 1000),
      proxy_s: engine ? (after.proxy - before.proxy) / 1e6 : null,
      server_s: (after.server - before.server) / 1e6,
      client_s: (after.client - before.client) / 1e6,
      machine_s: r3(after.machine.busy - before.machine.busy),
    };
    rec.metrics = { ...result.metrics };
    if (result.requests) {
      rec.requests = result.requests;
      if (rec.cpu.proxy_s !== null) rec.metrics.proxy_cpu_s_per_1k = (rec.cpu.proxy_s / result.requests) * 1000;
      rec.metrics.machine_cpu_s_per_1k = (rec.cpu.machine_s / result.requests) * 1000;
    }
    if (result.bytes) {
      rec.bytes = result.bytes;
      if (rec.cpu.proxy_s !== null) rec.metrics.proxy_cpu_s_per_gb = rec.cpu.proxy_s / (result.bytes / 1e9);
      rec.metrics.machine_cpu_s_per_gb = rec.cpu.machine_s / (result.bytes / 1e9);
    }
    if (rec.proxy_peak_rss_mb !== null) rec.metrics.proxy_peak_rss_mb = rec.proxy_peak_rss_mb;
    if (result.curve) rec.curve = result.curve;
    rec.redirects.ebpf = counterDelta(before.counters, after.counters);
    rec.redirects.iptables = before.iptables !== null && after.iptables !== null ? after.iptables - before.iptables : null;
    checkPath(mode, rec);
    rec.ok = true;
  } catch (err) {
    rec.error = (err as Error).message;
  } finally {
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    };
    if (engine) {
      await step('stopping the engine', () => engine!.stop());
      rec.redirects.proxy_connections = engine.connections;
    }
    if (server) await step('stopping the server pod', () => server!.stop());
    if (iptables) await step('removing iptables rules', () => iptables!.close({ detach: true }));
    if (dp) await step('releasing the eBPF capture', () => dp!.apply({ workloads: [], failMode: 'closed' }));
    problems.push(...bed.destroy());
  }
  if (problems.length) {
    // The run's own leftovers are a bench failure, not just a bad figure.
    rec.ok = false;
    rec.error = [rec.error, ...problems].filter(Boolean).join('; ');
  }
  if (rec.ok && mode.engine.startsWith('kernmesh') && !rec.redirects.proxy_connections) {
    rec.ok = false;
    rec.error = 'our proxy accepted no connection';
  }
  return rec;
}
