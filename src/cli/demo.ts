// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh demo`: until the full local mesh lands, the demo shows the real
 * interception path: a scratch pod (netns + cgroup) dials service VIPs and
 * the kernel steers and splices its connections to a stand-in proxy.
 */
import type { Command } from 'commander';
import { selftest } from '../datapath/index.ts';
import { printSelftest } from './datapath.ts';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('show eBPF interception on this machine (scratch pod -> VIP -> proxy), then clean up')
    .action(async () => {
      console.log('kernmesh demo: a scratch pod dials 10.96.0.10:80 and [fd00:96::10]:80;');
      console.log('connect4/6 steer it to the proxy, sockops+sk_msg splice the sockets, getsockopt tells the proxy where it was going.\n');
      const report = await selftest();
      printSelftest(report);
      if (!report.ok) process.exitCode = 1;
    });
}
