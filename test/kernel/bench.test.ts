// SPDX-License-Identifier: Apache-2.0
// `kernmesh bench --quick` end to end, short: every mode carries traffic, the
// eBPF datapath's counters move in eBPF runs and only there, iptables
// redirects in iptables runs, the JSON last line has every key, and the
// bench leaves no namespace, cgroup, pin or process behind; with --idle-poll
// the CPUs are kept out of idle states while the latency workloads measure,
// and only then.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuLatencyTargetUs } from '../../src/bench/cpu-latency.ts';
import { cgroup2Root } from '../../src/datapath/index.ts';
import { DEFAULT_MODES } from '../../src/bench/modes.ts';
import type { BenchReport } from '../../src/bench/report.ts';
import { kernelTest } from './helpers/kernel-test.ts';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; pid: number }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // SIGINT, like Ctrl-C: the bench still cleans up, and the test sees what it left.
  const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, pid: child.pid! });
    });
  });
}

kernelTest('bench --quick: every mode carries traffic, eBPF counters move only in eBPF runs, nothing is left behind', async (t) => {
  t.timeout(220_000);
  const out = mkdtempSync(join(tmpdir(), 'kernmesh-bench-test-'));
  try {
    // The CPU latency target, sampled while the bench runs: with --idle-poll, held at 0 µs during the latency workloads, and released.
    const idleTarget = cpuLatencyTargetUs();
    t.not(idleTarget, 0, 'something else on this machine holds the CPUs out of idle: the test could not tell the bench did');
    const targets = new Set<number>();
    const sampler = setInterval(() => targets.add(cpuLatencyTargetUs()), 100);
    const r = await run(['bench', '--quick', '--json', '--seconds', '1', '--workloads', 'rps,latency,latency-loaded,cps', '--idle-poll', '--out', out], 200_000);
    clearInterval(sampler);
    t.is(r.code, 0, r.stderr);
    t.true(targets.has(0), `the CPUs were kept out of idle during the latency runs (targets seen: ${[...targets]})`);
    t.true(targets.has(idleTarget), 'and only then');
    t.is(cpuLatencyTargetUs(), idleTarget, 'released at the end');
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown> & { modes: Record<string, { rps: number }> };
    for (const key of ['modes', 'ebpf_vs_iptables_rps', 'ebpf_vs_iptables_cps', 'ebpf_vs_iptables_p99', 'ebpf_vs_iptables_p99_loaded', 'mesh_vs_direct_p50']) {
      t.true(key in last, `the JSON line has ${key}`);
      t.not(last[key], null, `${key} was measured`);
    }
    t.deepEqual(Object.keys(last.modes).sort(), [...DEFAULT_MODES].sort());
    for (const m of DEFAULT_MODES) t.true(last.modes[m]!.rps > 0, `${m} carried requests`);

    const report = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as BenchReport;
    t.is(report.runs.filter((x) => !x.ok).length, 0, JSON.stringify(report.runs.filter((x) => !x.ok).map((x) => x.error)));
    for (const run of report.runs) {
      const e = run.redirects.ebpf!;
      const where = `${run.mode} ${run.workload}`;
      t.truthy(e, `${where}: counters read`);
      if (run.mode.startsWith('ebpf')) {
        t.true(e.connect4_redirected! > 0, `${where}: connect4 redirected`);
        t.true(e.msg_redirected! > 0, `${where}: sk_msg spliced`);
      } else {
        t.is(e.connect4_redirected, 0, `${where}: connect4 redirected nothing`);
        t.is(e.msg_redirected, 0, `${where}: sk_msg spliced nothing`);
      }
      if (run.mode.startsWith('iptables')) t.true(run.redirects.iptables! > 0, `${where}: iptables redirected`);
    }
    for (const f of ['results.md', 'throughput.svg', 'latency.svg', 'latency-loaded.svg', 'throughput.png', 'latency.png', 'latency-loaded.png']) t.true(existsSync(join(out, f)), `${f} written`);

    // Nothing of this bench remains: its names all start with kernmesh-bench-<its pid>-.
    const prefix = `kernmesh-bench-${r.pid}-`;
    const mine = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(prefix)) : []);
    t.deepEqual(mine('/run/netns'), [], 'network namespaces');
    t.deepEqual(mine(cgroup2Root()), [], 'cgroups');
    t.deepEqual(mine('/sys/fs/bpf'), [], 'pins');
    t.deepEqual(report.cleanup_problems, []);
    t.true(report.children_started.length > 0);
    t.deepEqual(report.children_started.filter((pid) => existsSync(`/proc/${pid}`)), [], 'child processes still alive');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
