// SPDX-License-Identifier: Apache-2.0
/** `kernmesh check`: the pre-flight before installing on a node. */
import type { Command } from 'commander';
import { probeFeatures } from '../datapath/index.ts';
import { mark } from './output.ts';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check that this host can run the kernmesh datapath')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const checks = probeFeatures();
      const ok = checks.every((c) => c.ok);
      if (opts.json) console.log(JSON.stringify({ ok, checks }));
      else for (const c of checks) console.log(`${mark(c.ok)} ${c.name.padEnd(13)} ${c.detail}${c.fix ? `\n    → ${c.fix}` : ''}`);
      if (!ok) process.exitCode = 1;
    });
}
