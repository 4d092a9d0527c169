// SPDX-License-Identifier: Apache-2.0
/**
 * The results directory: results.json (every run, the medians, the ratios),
 * results.md (the tables a reviewer reads), throughput.svg and latency.svg,
 * and a PNG of each for README embedding when rsvg-convert is installed.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BarPanel, latencyChart, throughputChart } from './charts.ts';
import { MODES } from './modes.ts';
import type { BenchOptions } from './options.ts';
import type { RunRecord } from './run-one.ts';
import { round } from './stats.ts';
import type { Medians, Summary, goals } from './summary.ts';
import { measuresLatency } from './workloads/index.ts';

export interface BenchReport {
  meta: {
    date: string;
    finished: string;
    kernel: string;
    cpus: number;
    cpu_model: string;
    node: string;
    haproxy: string;
    wrk: string;
    h2load: string;
    iperf3: string;
    command: string;
    results_dir: string;
  };
  options: BenchOptions;
  skipped: Array<{ mode: string; workload: string; reason: string }>;
  cleanup_problems: string[];
  /** Every pid the bench started (none outlives it). */
  children_started: number[];
  summary: Summary;
  goals: ReturnType<typeof goals>;
  medians: Medians;
  runs: RunRecord[];
}

const cell = (v: number | null | undefined, digits = 3) => (v == null ? '–' : String(round(v, digits)));
const x = (v: number | null | undefined) => (v == null ? '–' : `${round(v, 3)}×`);

export function markdown(r: BenchReport): string {
  const s = r.summary;
  const o = r.options;
  const modes = o.modes;
  const failed = r.runs.filter((x) => !x.ok);
  const floor = r.medians.direct?.latency?.send_late_p50_ms;
  const floorTail = r.medians.direct?.latency?.send_late_p99_ms;
  const lines = [
    `# kernmesh bench, ${r.meta.date.slice(0, 10)}`,
    '',
    `Linux ${r.meta.kernel}, ${r.meta.cpus} CPUs (${r.meta.cpu_model}), Node ${r.meta.node}, ${r.meta.haproxy}. ` +
      `${o.rounds} round(s), ${o.seconds} s per run after ${o.warmupSeconds} s of warm-up, modes interleaved; ${o.connections} connections for the fixed-concurrency workloads, ${o.rate} req/s for the latency one (a light load) and ${o.loadedRate} req/s for latency-loaded${measuresLatency(o.workloads) && o.idlePoll ? ', with the CPUs kept out of idle states while the latency workloads measure (--idle-poll)' : ''}. ` +
      'Load generator, proxy and server share the same cores: compare the ratios, which were measured in one run, rather than the absolute figures.',
    '',
    `Command: \`${r.meta.command}\``,
    '',
    '## Medians',
    '',
    '| mode | HTTP req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | loaded p50 ms | loaded p99 ms | loaded p99.9 ms | new conn/s | bulk Gbit/s | gRPC calls/s | proxy CPU s / 1k req | machine CPU s / 1k req | proxy peak RSS MiB |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...modes.map((m) => {
      const f = s.modes[m]!;
      return `| ${m} | ${cell(f.rps, 4)} | ${cell(f.p50_ms)} | ${cell(f.p90_ms)} | ${cell(f.p99_ms)} | ${cell(f.p999_ms)} | ${cell(f.loaded_p50_ms)} | ${cell(f.loaded_p99_ms)} | ${cell(f.loaded_p999_ms)} | ${cell(f.cps, 4)} | ${cell(f.bulk_gbps)} | ${cell(f.grpc_rps, 4)} | ${cell(f.proxy_cpu_s_per_1k_req)} | ${cell(f.machine_cpu_s_per_1k_req)} | ${cell(f.proxy_peak_rss_mb)} |`;
    }),
    '',
    '## eBPF / iptables (same engine)',
    '',
    '| engine | HTTP req/s | new conn/s | p50 | p99 | loaded p99 | gRPC calls/s | bulk Gbit/s |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    ...Object.entries(s.ebpf_vs_iptables).map(([e, v]) => `| ${e} | ${x(v.rps)} | ${x(v.cps)} | ${x(v.p50)} | ${x(v.p99)} | ${x(v.p99_loaded)} | ${x(v.grpc_rps)} | ${x(v.bulk_gbps)} |`),
    '',
    'Above 1 is better for throughput, below 1 for latency.',
    '',
    '## Mesh / no mesh',
    '',
    '| mode | HTTP req/s | p50 | p99 | new conn/s |',
    '|---|--:|--:|--:|--:|',
    ...Object.entries(s.mesh_vs_direct).map(([m, v]) => `| ${m} | ${x(v.rps)} | ${x(v.p50)} | ${x(v.p99)} | ${x(v.cps)} |`),
    '',
    '## Goals of issue #6',
    '',
    '| goal | measured | met |',
    '|---|--:|:-:|',
    ...r.goals.map((g) => `| ${g.goal} | ${x(g.value)} | ${g.met == null ? '–' : g.met ? 'yes' : 'no'} |`),
    '',
    '## Spread over rounds (min / median / max)',
    '',
    '| mode | HTTP req/s | new conn/s | p99 ms | loaded p99 ms | gRPC calls/s |',
    '|---|--:|--:|--:|--:|--:|',
    ...modes.map((m) => {
      const sp = (w: string, k: string, d = 4) => {
        const v = r.medians[m]?.[w]?.[k];
        return v ? `${round(v.min, d)} / ${round(v.median, d)} / ${round(v.max, d)}` : '–';
      };
      return `| ${m} | ${sp('rps', 'rps')} | ${sp('cps', 'cps')} | ${sp('latency', 'p99_ms', 3)} | ${sp('latency-loaded', 'p99_ms', 3)} | ${sp('grpc', 'grpc_rps')} |`;
    }),
    '',
    '![throughput per mode](throughput.png)',
    '',
    '![latency distribution per mode](latency.png)',
    '',
    '![latency distribution per mode, loaded](latency-loaded.png)',
    '',
    '## How to read this',
    '',
    ...MODES.filter((m) => modes.includes(m.name)).map((m) => `- **${m.name}**: ${m.description}.`),
    '- Latency is measured at a fixed rate from each request\'s intended send time (coordinated omission corrected)' +
      (floor && floorTail
        ? `; the generator itself sends a median ${round(floor.median)} ms late (the p99 of its lateness was ${round(floorTail.min)} to ${round(floorTail.max)} ms over the no-mesh runs), and every mode's figure includes that: on a shared machine the tail says as much about the machine as about the path.`
        : '.'),
    "- wrk's own latency figures (wrk_p50_ms, wrk_p99_ms in results.json) are measured from the actual send: not corrected.",
    '- HAProxy does not read SO_ORIGINAL_DST here: each run gives it the server pod\'s address and the workload\'s port as a fixed backend, which is what it would have found.',
    '- The proxy, and HAProxy, run one process (one event loop; HAProxy nbthread 1); the agent runs one proxy worker per core.',
    '- CPU: the proxy\'s cgroup (cpu.stat) and the whole machine (/proc/stat, other tenants included) over the measured window.',
    ...r.skipped.filter((v, i, a) => a.findIndex((w) => w.reason === v.reason && w.workload === v.workload) === i).map((v) => `- Skipped ${v.workload} in ${r.skipped.filter((w) => w.reason === v.reason && w.workload === v.workload).map((w) => w.mode).join(', ')}: ${v.reason}.`),
    ...(failed.length ? ['', '## Failed runs', '', ...failed.map((f) => `- round ${f.round} ${f.workload} ${f.mode}: ${f.error}`)] : []),
    '',
  ];
  return lines.join('\n');
}

function panels(r: BenchReport): BarPanel[] {
  const spec: Array<[string, string, string, string]> = [
    ['rps', 'rps', 'HTTP/1.1 keep-alive', 'req/s'],
    ['cps', 'cps', 'New connection per request', 'conn/s'],
    ['grpc', 'grpc_rps', 'gRPC unary (h2c)', 'calls/s'],
    ['bulk', 'gbps', 'Bulk, one connection', 'Gbit/s'],
  ];
  return spec
    .map(([w, k, title, unit]) => ({ title, unit, bars: r.options.modes.flatMap((mode) => (r.medians[mode]?.[w]?.[k] ? [{ mode, spread: r.medians[mode]![w]![k]! }] : [])) }))
    .filter((p) => p.bars.length);
}

/** Writes the results directory; the PNGs need rsvg-convert (librsvg2-bin), and are skipped with a note without it. */
export function writeReport(r: BenchReport, say: (line: string) => void): void {
  const dir = r.meta.results_dir;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(dir, 'results.md'), markdown(r));
  const subtitle = `Linux ${r.meta.kernel}, ${r.meta.cpus} CPUs, ${r.meta.date.slice(0, 10)}; ${r.options.rounds} round(s) of ${r.options.seconds} s; generator, proxy and server share the cores`;
  const charts: Array<[string, string]> = [];
  const p = panels(r);
  if (p.length) charts.push(['throughput', throughputChart(p, subtitle)]);
  const latencies: Array<[string, Summary['curves'], string]> = [
    ['latency', r.summary.curves, `${r.options.rate} req/s`],
    ['latency-loaded', r.summary.curves_loaded, `loaded: ${r.options.loadedRate} req/s`],
  ];
  for (const [name, byMode, rate] of latencies) {
    const curves = Object.entries(byMode).map(([mode, points]) => ({ mode, points }));
    if (curves.length) charts.push([name, latencyChart(curves, `${subtitle}; ${rate} over ${r.options.connections} connections`)]);
  }
  for (const [name, svg] of charts) {
    writeFileSync(join(dir, `${name}.svg`), svg);
    try {
      execFileSync('rsvg-convert', ['--zoom', '2', '--format', 'png', '--output', join(dir, `${name}.png`), join(dir, `${name}.svg`)], { stdio: 'pipe' });
    } catch (err) {
      say(`no ${name}.png: rsvg-convert failed or is missing (apt-get install librsvg2-bin): ${(err as Error).message.split('\n')[0]}`);
    }
  }
}

/** The one JSON object --json prints last: per-mode medians and the headline ratios. */
export function jsonLine(r: BenchReport): Record<string, unknown> {
  const s = r.summary;
  return {
    modes: s.modes,
    ebpf_vs_iptables_rps: s.ebpf_vs_iptables_rps,
    ebpf_vs_iptables_cps: s.ebpf_vs_iptables_cps,
    ebpf_vs_iptables_p99: s.ebpf_vs_iptables_p99,
    ebpf_vs_iptables_p99_loaded: s.ebpf_vs_iptables_p99_loaded,
    mesh_vs_direct_p50: s.mesh_vs_direct_p50,
    ebpf_vs_iptables: s.ebpf_vs_iptables,
    mesh_vs_direct: s.mesh_vs_direct,
    kernel: r.meta.kernel,
    cpus: r.meta.cpus,
    date: r.meta.date,
    quick: r.options.quick,
    rounds: r.options.rounds,
    seconds: r.options.seconds,
    runs: r.runs.length,
    failed_runs: r.runs.filter((x) => !x.ok).length,
    cleanup_problems: r.cleanup_problems,
    results_dir: r.meta.results_dir,
  };
}
