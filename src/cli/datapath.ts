// SPDX-License-Identifier: Apache-2.0
/** `kernmesh datapath selftest|cleanup`. */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { type SelftestReport, cleanupPins, defaultLockPath, selftest, takeLock } from '../datapath/index.ts';
import { releaseLock } from '../datapath/lock.ts';
import { checkPinDir } from '../datapath/pins.ts';
import { EXIT } from './exit-codes.ts';
import { mark } from './output.ts';

export function printSelftest(r: SelftestReport): void {
  for (const f of r.features) console.log(`${mark(f.ok)} ${f.name.padEnd(13)} ${f.detail}${f.fix ? `\n    → ${f.fix}` : ''}`);
  for (const h of r.hooks) {
    const counters = Object.entries(h.counters)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    console.log(`${mark(h.ok)} ${h.hook.padEnd(13)} ${h.detail}  [${counters}]`);
  }
  // Nothing is made when the host lacks a feature: there is nothing to clean up either.
  if (r.features.every((f) => f.ok)) console.log(`${mark(r.cleanup.ok)} ${'cleanup'.padEnd(13)} ${r.cleanup.ok ? 'scratch cgroup, netns and pins removed' : r.cleanup.problems.join('; ')}`);
  if (r.error) console.log(`${mark(false)} error         ${r.error}`);
  console.log(r.ok ? 'datapath selftest passed' : 'datapath selftest FAILED');
}

export function registerDatapath(program: Command): void {
  const dp = program.command('datapath').description('the eBPF datapath on this node');
  dp.command('selftest')
    .description('send real connections through the outbound hooks (connect4/6, sockops, sk_msg, getsockopt) in a scratch cgroup and netns, then clean up')
    .option('--json', 'print one JSON object')
    .action(async (opts: { json?: boolean }) => {
      const report = await selftest();
      if (opts.json) console.log(JSON.stringify(report));
      else printSelftest(report);
      // A failing selftest is this host's or its datapath's problem.
      if (!report.ok) process.exitCode = EXIT.HOST;
    });
  dp.command('cleanup')
    .description('detach and unpin everything an agent left under a pin directory (the uninstall path)')
    .option('--pin-dir <dir>', 'the agent pin directory', '/sys/fs/bpf/kernmesh')
    .action((opts: { pinDir: string }) => {
      // Pins only ever live on a bpffs: any other directory is a mistake, not an empty one.
      const pinDir = resolve(opts.pinDir);
      checkPinDir(pinDir);
      // The same lock a running agent holds: never pull the pins from under a live agent.
      const lockPath = defaultLockPath(pinDir);
      const lock = takeLock(lockPath, pinDir);
      let removed: string[];
      try {
        removed = cleanupPins(pinDir);
      } finally {
        releaseLock(lock, lockPath);
      }
      console.log(removed.length ? removed.map((p) => `removed ${p}`).join('\n') : `nothing pinned under ${pinDir}`);
    });
}
