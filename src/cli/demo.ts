// SPDX-License-Identifier: Apache-2.0
/** `kernmesh demo up | traffic | down`: the whole mesh on this machine. */
import { type Command, InvalidArgumentError } from 'commander';
import { probeFeatures } from '../datapath/index.ts';
import { down } from '../demo/down.ts';
import { DEFAULT_DEMO_DIR } from '../demo/state.ts';
import { EXPECTED_LEGEND, liveFrame, renderTraffic, traffic } from '../demo/traffic.ts';
import { up } from '../demo/up.ts';
import { EXIT, ExitError } from './exit-codes.ts';

/** The longest traffic run: a day (a timer in the load generator waits at most 24.8 days). */
const MAX_SECONDS = 86_400;

/** `--seconds`: a whole number of seconds, 1 to a day. */
export function parseSeconds(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_SECONDS) {
    throw new InvalidArgumentError(`give a whole number of seconds from 1 to ${MAX_SECONDS}.`);
  }
  return Number(value);
}

/**
 * The demo makes network namespaces, cgroups and BPF pins: as anyone else it
 * would fail half-way with a bare EACCES. `up` also needs the kernel's
 * features; `traffic` and `down` need only the privileges.
 */
function needHost(command: string, all: boolean): void {
  const missing = probeFeatures().filter((f) => !f.ok && (all || f.name === 'capabilities'));
  if (missing.length === 0) return;
  const caps = missing.find((f) => f.name === 'capabilities');
  const others = missing.filter((f) => f !== caps);
  const needs = [
    ...(caps ? [`root: it makes network namespaces, cgroups and BPF programs (${caps.detail}); run it as root`] : []),
    ...(others.length ? [`what this host lacks: ${others.map((f) => `${f.name}: ${f.detail}${f.fix ? ` (${f.fix})` : ''}`).join('; ')}`] : []),
  ];
  throw new ExitError(EXIT.HOST, `kernmesh demo ${command} needs ${needs.join('; and ')}`);
}

export function registerDemo(program: Command): void {
  const demo = program.command('demo').description('the whole mesh on this machine: pods as network namespaces, Redis, the agent in eBPF mode (as root)');
  const dirOption = ['--dir <dir>', 'where the demo keeps its state', DEFAULT_DEMO_DIR] as const;
  demo
    .command('up')
    .description('build the demo mesh (again, if one is up)')
    .option(...dirOption)
    .action(async (opts: { dir: string }) => {
      needHost('up', true);
      const state = await up(opts.dir, (l) => console.log(l));
      // As the README runs commands: from the checkout, through npx.
      console.log(`\nthe demo is up (Redis at unix://${state.redisSocket}). Next:\n  npx kernmesh demo traffic --seconds 10\n  npx kernmesh status\n  npx kernmesh demo down`);
    });
  demo
    .command('traffic')
    .description('send a steady mix of requests from the captured pod and show them live')
    .option(...dirOption)
    .option('--seconds <n>', 'how long (1 to 86400)', parseSeconds, 10)
    .option('--json', 'print one JSON summary at the end instead of the live view')
    .action(async (opts: { dir: string; seconds: number; json?: boolean }) => {
      needHost('traffic', false);
      const tty = !!process.stdout.isTTY;
      const summary = await traffic(opts.dir, opts.seconds, (lines, second) => {
        if (!opts.json) process.stdout.write(liveFrame(lines, second, tty));
      });
      if (opts.json) console.log(JSON.stringify({ seconds: opts.seconds, services: summary }));
      else console.log(`${tty ? '\n' : ''}over ${opts.seconds} s:\n${renderTraffic(summary)}\n${EXPECTED_LEGEND}`);
    });
  demo
    .command('down')
    .description('remove everything the demo made')
    .option(...dirOption)
    .action(async (opts: { dir: string }) => {
      needHost('down', false);
      const problems = await down(opts.dir, (l) => console.log(l));
      if (problems.length) {
        for (const p of problems) console.error(`could not remove ${p}`);
        process.exitCode = EXIT.HOST;
      } else console.log('the demo is down');
    });
}
