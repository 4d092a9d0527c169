// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh bench`: every selected workload through every selected mode,
 * interleaved round by round (A B C, B C A, …) so that a drifting, shared
 * machine hits every mode alike, then medians, ratios, a report and charts.
 * Ctrl-C (or SIGTERM) stops the current run and still cleans up.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, release } from 'node:os';
import { holdCpuLatency } from './cpu-latency.ts';
import { Lab } from './lab.ts';
import { modeByName } from './modes.ts';
import type { BenchOptions } from './options.ts';
import { type BenchReport, writeReport } from './report.ts';
import { type RunRecord, runOne } from './run-one.ts';
import { round } from './stats.ts';
import { goals, medians, summarize } from './summary.ts';
import { WORKLOADS, measuresLatency } from './workloads/index.ts';
import { checkLoadgen } from './workloads/latency.ts';

/** The Debian package of each tool the bench runs. */
const TOOLS: Record<string, string> = { haproxy: 'haproxy', wrk: 'wrk', h2load: 'nghttp2-client', iperf3: 'iperf3', iptables: 'iptables', nsenter: 'util-linux', ss: 'iproute2' };

export class BenchAborted extends Error {}

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
  } catch (err) {
    return ((err as { stdout?: string }).stdout ?? '').split('\n')[0]!.trim() || 'unknown';
  }
}

/** What each run's one line says. */
function describe(r: RunRecord): string {
  if (!r.ok) return `FAILED: ${r.error}`;
  const m = r.metrics;
  const main =
    r.workload === 'rps' ? `${round(m.rps!, 4)} req/s`
    : r.workload.startsWith('latency') ? `p50 ${round(m.p50_ms!)} ms, p99 ${round(m.p99_ms!)} ms, p99.9 ${round(m.p999_ms!)} ms`
    : r.workload === 'cps' ? `${round(m.cps!, 4)} conn/s`
    : r.workload === 'bulk' ? `${round(m.gbps!)} Gbit/s`
    : `${round(m.grpc_rps!, 4)} calls/s`;
  // CPU seconds per 1 000 requests, shown as the same number in µs per request.
  const cpu = m.proxy_cpu_s_per_1k !== undefined ? `, proxy ${round(m.proxy_cpu_s_per_1k * 1000)} µs CPU/req` : '';
  return main + cpu;
}

export async function runBench(opts: BenchOptions, say: (line: string) => void): Promise<BenchReport> {
  const missing = Object.keys(TOOLS).filter((t) => !has(t));
  if (missing.length) throw new Error(`the bench needs ${missing.join(', ')}: apt-get install ${[...new Set(missing.map((t) => TOOLS[t]))].join(' ')} (or run scripts/bootstrap.sh)`);
  if (measuresLatency(opts.workloads)) {
    checkLoadgen();
    // Before the first run, not in the middle of the bench: a machine where it cannot work says so at once.
    if (opts.idlePoll) holdCpuLatency().release();
  }
  const modes = opts.modes.map(modeByName);
  const workloads = WORKLOADS.filter((w) => opts.workloads.includes(w.name));
  const plan = workloads.reduce((n, w) => n + modes.filter((m) => !w.skip?.(m)).length, 0) * opts.rounds;
  const startedAt = new Date();
  const runs: RunRecord[] = [];
  const skipped: Array<{ mode: string; workload: string; reason: string }> = [];
  for (const w of workloads) for (const m of modes) {
    const reason = w.skip?.(m);
    if (reason) skipped.push({ mode: m.name, workload: w.name, reason });
  }

  const lab = new Lab();
  let aborted: string | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (aborted) return say(`${sig} again: still cleaning up`);
    aborted = sig;
    say(`${sig}: stopping the current run and cleaning up`);
    void lab.procs.killAll();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let cleanupProblems: string[] = [];
  try {
    await lab.setup(new Set(modes.map((m) => m.interception)), say);
    say(`bench: ${modes.length} modes × ${workloads.length} workloads × ${opts.rounds} round(s) = ${plan} runs of ${opts.seconds} s (+${opts.warmupSeconds} s warm-up) on ${availableParallelism()} CPUs, kernel ${release()}`);
    let runNo = 0;
    for (let r = 1; r <= opts.rounds && !aborted; r++) {
      for (const w of workloads) {
        // Rotate the order each round: no mode always runs first (or right after a given other).
        const order = modes.map((_, i) => modes[(i + r - 1) % modes.length]!);
        for (const m of order) {
          if (aborted) break;
          if (w.skip?.(m)) continue;
          const rec = await runOne(lab, opts, m, w, r, ++runNo);
          runs.push(rec);
          say(`[${runNo}/${plan}] round ${r} ${w.name.padEnd(14)} ${m.name.padEnd(21)} ${describe(rec)}`);
        }
      }
    }
  } finally {
    cleanupProblems = await lab.cleanup();
    for (const s of signals) process.off(s, onSignal);
    for (const p of cleanupProblems) say(`cleanup: ${p}`);
  }
  if (aborted) throw new BenchAborted(`interrupted by ${aborted}; everything the bench made was removed${cleanupProblems.length ? ' except what is listed above' : ''}`);

  const summary = summarize(runs, opts.modes);
  const report: BenchReport = {
    meta: {
      date: startedAt.toISOString(),
      finished: new Date().toISOString(),
      kernel: release(),
      cpus: availableParallelism(),
      cpu_model: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      haproxy: version('haproxy', ['-v']),
      wrk: version('wrk', ['-v']),
      h2load: version('h2load', ['--version']),
      iperf3: version('iperf3', ['--version']),
      command: `kernmesh ${process.argv.slice(2).join(' ')}`,
      results_dir: opts.out,
    },
    options: opts,
    skipped,
    cleanup_problems: cleanupProblems,
    children_started: lab.procs.pids,
    summary,
    goals: goals(summary),
    medians: medians(runs),
    runs,
  };
  writeReport(report, say);
  return report;
}
