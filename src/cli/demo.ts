// SPDX-License-Identifier: Apache-2.0
/** `kernmesh demo up | traffic | down`: the whole mesh on this machine. */
import type { Command } from 'commander';
import { down } from '../demo/down.ts';
import { DEFAULT_DEMO_DIR } from '../demo/state.ts';
import { renderTraffic, traffic } from '../demo/traffic.ts';
import { up } from '../demo/up.ts';

export function registerDemo(program: Command): void {
  const demo = program.command('demo').description('the whole mesh on this machine: pods as network namespaces, Redis, the agent in eBPF mode');
  const dirOption = ['--dir <dir>', 'where the demo keeps its state', DEFAULT_DEMO_DIR] as const;
  demo
    .command('up')
    .description('build the demo mesh (again, if one is up)')
    .option(...dirOption)
    .action(async (opts: { dir: string }) => {
      const state = await up(opts.dir, (l) => console.log(l));
      console.log(`\nthe demo is up (Redis at unix://${state.redisSocket}). Next:\n  kernmesh demo traffic --seconds 10\n  kernmesh status\n  kernmesh demo down`);
    });
  demo
    .command('traffic')
    .description('send a steady mix of requests from the captured pod and show them live')
    .option(...dirOption)
    .option('--seconds <n>', 'how long', '10')
    .option('--json', 'print one JSON summary at the end instead of the live view')
    .action(async (opts: { dir: string; seconds: string; json?: boolean }) => {
      const summary = await traffic(opts.dir, Number(opts.seconds), (lines) => {
        if (!opts.json) process.stdout.write(`\x1b[2J\x1b[H${renderTraffic(lines)}\n`);
      });
      if (opts.json) console.log(JSON.stringify({ seconds: Number(opts.seconds), services: summary }));
      else console.log(`\nover ${opts.seconds} s:\n${renderTraffic(summary)}`);
    });
  demo
    .command('down')
    .description('remove everything the demo made')
    .option(...dirOption)
    .action(async (opts: { dir: string }) => {
      const problems = await down(opts.dir, (l) => console.log(l));
      if (problems.length) {
        for (const p of problems) console.error(`could not remove ${p}`);
        process.exitCode = 1;
      } else console.log('the demo is down');
    });
}
