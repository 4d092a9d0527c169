// SPDX-License-Identifier: Apache-2.0
/** `kernmesh datapath selftest|cleanup`. */
import type { Command } from 'commander';
import { closeSync } from 'node:fs';
import { type SelftestReport, cleanupPins, defaultLockPath, selftest, takeLock } from '../datapath/index.ts';
import { mark } from './output.ts';

export function printSelftest(r: SelftestReport): void {
  for (const f of r.features) console.log(`${mark(f.ok)} ${f.name.padEnd(13)} ${f.detail}${f.fix ? `\n    → ${f.fix}` : ''}`);
  for (const h of r.hooks) {
    const counters = Object.entries(h.counters)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    console.log(`${mark(h.ok)} ${h.hook.padEnd(13)} ${h.detail}  [${counters}]`);
  }
  console.log(`${mark(r.cleanup.ok)} ${'cleanup'.padEnd(13)} ${r.cleanup.ok ? 'scratch cgroup, netns and pins removed' : r.cleanup.problems.join('; ')}`);
  if (r.error) console.log(`${mark(false)} error         ${r.error}`);
  console.log(r.ok ? 'datapath selftest passed' : 'datapath selftest FAILED');
}

export function registerDatapath(program: Command): void {
  const dp = program.command('datapath').description('the eBPF datapath on this node');
  dp.command('selftest')
    .description('send real connections through every BPF hook in a scratch cgroup and netns, then clean up')
    .option('--json', 'print one JSON object')
    .action(async (opts: { json?: boolean }) => {
      const report = await selftest();
      if (opts.json) console.log(JSON.stringify(report));
      else printSelftest(report);
      if (!report.ok) process.exitCode = 1;
    });
  dp.command('cleanup')
    .description('detach and unpin everything an agent left under a pin directory (the uninstall path)')
    .option('--pin-dir <dir>', 'the agent pin directory', '/sys/fs/bpf/kernmesh')
    .action((opts: { pinDir: string }) => {
      // The same lock a running agent holds: never pull the pins from under a live agent.
      const lock = takeLock(defaultLockPath(opts.pinDir), opts.pinDir);
      let removed: string[];
      try {
        removed = cleanupPins(opts.pinDir);
      } finally {
        closeSync(lock);
      }
      console.log(removed.length ? removed.map((p) => `removed ${p}`).join('\n') : `nothing pinned under ${opts.pinDir}`);
    });
}
