// SPDX-License-Identifier: Apache-2.0
/** `kernmesh bench`: every mode side by side on this machine, in one run. */
import { type Command, InvalidArgumentError } from 'commander';
import { MODE_NAMES } from '../bench/modes.ts';
import { resolveOptions } from '../bench/options.ts';
import { jsonLine, markdown } from '../bench/report.ts';
import { BenchAborted, runBench } from '../bench/run.ts';
import { WORKLOAD_NAMES } from '../bench/workloads/index.ts';
import { EXIT } from './exit-codes.ts';

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const num = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('a positive number');
  return n;
};

interface Flags {
  quick?: boolean;
  json?: boolean;
  rounds?: number;
  seconds?: number;
  out?: string;
  modes?: string[];
  workloads?: string[];
  connections?: number;
  rate?: number;
  loadedRate?: number;
  idlePoll?: boolean;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('build a testbed (client and server pods, the proxy) and run the same workloads with no mesh, iptables and eBPF interception, interleaved; writes JSON, a markdown table and charts')
    .option('--quick', 'every mode once, short (a CI smoke test)')
    .option('--json', 'print one JSON object (medians per mode and the ratios) as the last line')
    .option('--rounds <n>', 'rounds of every mode (default 5; 1 with --quick)', num)
    .option('--seconds <n>', 'measured seconds per run (default 5; 2 with --quick)', num)
    .option('--out <dir>', 'results directory (default: a new kernmesh-bench-<date> in the temporary directory)')
    .option('--modes <list>', `comma-separated, of ${MODE_NAMES.join(', ')}`, list)
    .option('--workloads <list>', `comma-separated, of ${WORKLOAD_NAMES.join(', ')}`, list)
    .option('--connections <n>', 'concurrency of the fixed-concurrency workloads', num, 16)
    .option('--rate <n>', 'requests per second of the latency workload, a light load (default 2000; 1000 with --quick)', num)
    .option('--loaded-rate <n>', 'requests per second of the latency-loaded workload (default 10000; 5000 with --quick)', num)
    .option('--idle-poll', 'keep the CPUs out of idle states while the latency workloads measure (/dev/cpu_dma_latency held at 0 µs, as cyclictest does): wake-up latency out of the figures')
    .action(async (flags: Flags, cmd: Command) => {
      let opts;
      try {
        opts = resolveOptions(flags);
      } catch (err) {
        return cmd.error(`error: ${(err as Error).message}`, { exitCode: EXIT.USAGE });
      }
      // With --json, stdout carries the JSON object only: the progress goes to stderr.
      const say = (line: string) => (flags.json ? console.error(line) : console.log(line));
      let report;
      try {
        report = await runBench(opts, say);
      } catch (err) {
        if (err instanceof BenchAborted) {
          console.error(`kernmesh bench: ${err.message}`);
          process.exitCode = 130;
          return;
        }
        throw err;
      }
      const failed = report.runs.filter((r) => !r.ok).length;
      if (flags.json) {
        console.error(`results in ${report.meta.results_dir}`);
        console.log(JSON.stringify(jsonLine(report)));
      } else {
        console.log(`\n${markdown(report).split('\n## Spread')[0]!.trim()}\n`);
        console.log(`results in ${report.meta.results_dir} (results.json, results.md, throughput.svg/png, latency.svg/png, latency-loaded.svg/png)`);
      }
      if (failed || report.cleanup_problems.length) {
        console.error(`kernmesh bench: ${failed} run(s) failed${report.cleanup_problems.length ? `, cleanup left: ${report.cleanup_problems.join('; ')}` : ''}`);
        process.exitCode = EXIT.FAILED;
      }
    });
}
