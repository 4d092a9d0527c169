// SPDX-License-Identifier: Apache-2.0
/** From every run to medians per mode and the ratios the issue asks for. */
import { MODES, PAIRS } from './modes.ts';
import type { RunRecord } from './run-one.ts';
import { CURVE_POINTS, type Spread, ratio, spread } from './stats.ts';

/** medians[mode][workload][metric] */
export type Medians = Record<string, Record<string, Record<string, Spread>>>;

export interface ModeFigures {
  /** HTTP/1.1 keep-alive requests per second. */
  rps: number | null;
  /** Latency at a fixed rate, corrected for coordinated omission. */
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
  p999_ms: number | null;
  /** The same at the loaded rate (the latency-loaded workload). */
  loaded_p50_ms: number | null;
  loaded_p99_ms: number | null;
  loaded_p999_ms: number | null;
  /** New connections (one request each) per second. */
  cps: number | null;
  bulk_gbps: number | null;
  grpc_rps: number | null;
  /** CPU seconds per 1 000 HTTP keep-alive requests: the proxy's cgroup, the whole machine. */
  proxy_cpu_s_per_1k_req: number | null;
  machine_cpu_s_per_1k_req: number | null;
  /** The proxy's peak resident memory over every run of the mode (MiB). */
  proxy_peak_rss_mb: number | null;
  runs_ok: number;
  runs_failed: number;
}

export interface Summary {
  modes: Record<string, ModeFigures>;
  /** eBPF over iptables, same engine: kernmesh (our L7 proxy), kernmesh-tcp, haproxy. */
  ebpf_vs_iptables: Record<string, { rps: number | null; cps: number | null; p50: number | null; p99: number | null; p99_loaded: number | null; grpc_rps: number | null; bulk_gbps: number | null }>;
  /** Each mesh mode over no mesh. */
  mesh_vs_direct: Record<string, { rps: number | null; p50: number | null; p99: number | null; cps: number | null }>;
  ebpf_vs_iptables_rps: number | null;
  ebpf_vs_iptables_cps: number | null;
  ebpf_vs_iptables_p99: number | null;
  /** The same ratio at the loaded rate. */
  ebpf_vs_iptables_p99_loaded: number | null;
  mesh_vs_direct_p50: number | null;
  /** Median latency distribution per mode, for the charts: at the light rate, and at the loaded one. */
  curves: Record<string, Array<[number, number]>>;
  curves_loaded: Record<string, Array<[number, number]>>;
}

export function medians(runs: RunRecord[]): Medians {
  const values: Record<string, Record<string, Record<string, number[]>>> = {};
  for (const r of runs) {
    if (!r.ok) continue;
    const w = ((values[r.mode] ??= {})[r.workload] ??= {});
    for (const [k, v] of Object.entries(r.metrics)) (w[k] ??= []).push(v);
  }
  const out: Medians = {};
  for (const [mode, ws] of Object.entries(values)) {
    for (const [w, ms] of Object.entries(ws)) {
      for (const [k, xs] of Object.entries(ms)) {
        const s = spread(xs);
        if (s) ((out[mode] ??= {})[w] ??= {})[k] = s;
      }
    }
  }
  return out;
}

export function summarize(runs: RunRecord[], modes: string[]): Summary {
  const med = medians(runs);
  const get = (mode: string, workload: string, metric: string) => med[mode]?.[workload]?.[metric]?.median ?? null;
  const figures: Record<string, ModeFigures> = {};
  for (const mode of modes) {
    const mine = runs.filter((r) => r.mode === mode);
    const peaks = mine.map((r) => r.proxy_peak_rss_mb).filter((x): x is number => x !== null);
    figures[mode] = {
      rps: get(mode, 'rps', 'rps'),
      p50_ms: get(mode, 'latency', 'p50_ms'),
      p90_ms: get(mode, 'latency', 'p90_ms'),
      p99_ms: get(mode, 'latency', 'p99_ms'),
      p999_ms: get(mode, 'latency', 'p999_ms'),
      loaded_p50_ms: get(mode, 'latency-loaded', 'p50_ms'),
      loaded_p99_ms: get(mode, 'latency-loaded', 'p99_ms'),
      loaded_p999_ms: get(mode, 'latency-loaded', 'p999_ms'),
      cps: get(mode, 'cps', 'cps'),
      bulk_gbps: get(mode, 'bulk', 'gbps'),
      grpc_rps: get(mode, 'grpc', 'grpc_rps'),
      proxy_cpu_s_per_1k_req: get(mode, 'rps', 'proxy_cpu_s_per_1k'),
      machine_cpu_s_per_1k_req: get(mode, 'rps', 'machine_cpu_s_per_1k'),
      proxy_peak_rss_mb: peaks.length ? Math.max(...peaks) : null,
      runs_ok: mine.filter((r) => r.ok).length,
      runs_failed: mine.filter((r) => !r.ok).length,
    };
  }
  const f = (m: string) => figures[m];
  const ebpfVsIptables: Summary['ebpf_vs_iptables'] = {};
  for (const p of PAIRS) {
    const e = f(p.ebpf);
    const i = f(p.iptables);
    if (!e || !i) continue;
    ebpfVsIptables[p.engine] = {
      rps: ratio(e.rps, i.rps),
      cps: ratio(e.cps, i.cps),
      p50: ratio(e.p50_ms, i.p50_ms),
      p99: ratio(e.p99_ms, i.p99_ms),
      p99_loaded: ratio(e.loaded_p99_ms, i.loaded_p99_ms),
      grpc_rps: ratio(e.grpc_rps, i.grpc_rps),
      bulk_gbps: ratio(e.bulk_gbps, i.bulk_gbps),
    };
  }
  const meshVsDirect: Summary['mesh_vs_direct'] = {};
  const d = f('direct');
  if (d) {
    for (const m of MODES) {
      const x = f(m.name);
      if (m.name === 'direct' || !x) continue;
      meshVsDirect[m.name] = { rps: ratio(x.rps, d.rps), p50: ratio(x.p50_ms, d.p50_ms), p99: ratio(x.p99_ms, d.p99_ms), cps: ratio(x.cps, d.cps) };
    }
  }
  return {
    modes: figures,
    ebpf_vs_iptables: ebpfVsIptables,
    mesh_vs_direct: meshVsDirect,
    ebpf_vs_iptables_rps: ebpfVsIptables.kernmesh?.rps ?? null,
    ebpf_vs_iptables_cps: ebpfVsIptables.kernmesh?.cps ?? null,
    ebpf_vs_iptables_p99: ebpfVsIptables.kernmesh?.p99 ?? null,
    ebpf_vs_iptables_p99_loaded: ebpfVsIptables.kernmesh?.p99_loaded ?? null,
    mesh_vs_direct_p50: meshVsDirect.ebpf?.p50 ?? null,
    curves: medianCurves(runs, modes, 'latency'),
    curves_loaded: medianCurves(runs, modes, 'latency-loaded'),
  };
}

/** At each percentile of the distribution, the median over the mode's latency runs. */
function medianCurves(runs: RunRecord[], modes: string[], workload: string): Summary['curves'] {
  const out: Summary['curves'] = {};
  for (const mode of modes) {
    const curves = runs.filter((r) => r.ok && r.mode === mode && r.workload === workload && r.curve).map((r) => new Map(r.curve!));
    if (!curves.length) continue;
    out[mode] = CURVE_POINTS.map((p) => [p, spread(curves.map((c) => c.get(p) ?? NaN))?.median ?? NaN] as [number, number]).filter(([, v]) => Number.isFinite(v));
  }
  return out;
}

/** The goals, measured against this run. */
export function goals(s: Summary): Array<{ goal: string; value: number | null; met: boolean | null }> {
  const k = s.ebpf_vs_iptables.kernmesh;
  const h = s.ebpf_vs_iptables.haproxy;
  const atLeast = (v: number | null | undefined, t: number) => (v == null ? null : v >= t);
  const atMost = (v: number | null | undefined, t: number) => (v == null ? null : v <= t);
  return [
    { goal: 'our proxy: eBPF ≥ 1.5× iptables in HTTP req/s', value: k?.rps ?? null, met: atLeast(k?.rps, 1.5) },
    { goal: 'our proxy: eBPF ≥ 1.3× iptables in new connections/s', value: k?.cps ?? null, met: atLeast(k?.cps, 1.3) },
    { goal: 'our proxy: eBPF p99 ≤ 0.7× iptables', value: k?.p99 ?? null, met: atMost(k?.p99, 0.7) },
    { goal: 'our proxy: the same, at the loaded rate', value: k?.p99_loaded ?? null, met: atMost(k?.p99_loaded, 0.7) },
    { goal: 'HAProxy: eBPF ≥ 1.5× iptables in HTTP req/s', value: h?.rps ?? null, met: atLeast(h?.rps, 1.5) },
    { goal: 'HAProxy: eBPF ≥ 1.3× iptables in new connections/s', value: h?.cps ?? null, met: atLeast(h?.cps, 1.3) },
    { goal: 'HAProxy: eBPF p99 ≤ 0.7× iptables', value: h?.p99 ?? null, met: atMost(h?.p99, 0.7) },
    { goal: 'HAProxy: the same, at the loaded rate', value: h?.p99_loaded ?? null, met: atMost(h?.p99_loaded, 0.7) },
    { goal: 'our L7 path (eBPF) p50 ≤ 2× no mesh', value: s.mesh_vs_direct_p50, met: atMost(s.mesh_vs_direct_p50, 2) },
  ];
}
