// SPDX-License-Identifier: Apache-2.0
// The baseline mode behind the same interface: REDIRECT in the pod netns,
// original destination from conntrack, answered through the same originalDst().
import { execFileSync } from 'node:child_process';
import { IptablesDatapath, Scratch } from '../../src/datapath/index.ts';
import { closeServer, describeOriginalDst, listen, runClient } from '../../src/datapath/selftest/run.ts';
import { PROXY_PORT, VIP4 } from './helpers/bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

const natRules = (s: Scratch) => execFileSync('nsenter', [`--net=${s.netnsPath}`, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });

kernelTest('iptables mode: a captured client lands on the proxy and originalDst returns the VIP', async (t) => {
  const scratch = new Scratch('iptables');
  const dp = new IptablesDatapath({ outboundPort: PROXY_PORT });
  const servers = [];
  try {
    scratch.setup();
    scratch.addVip(VIP4);
    scratch.cgroup('app');
    servers.push(
      await listen(scratch.netnsPath, '127.0.0.1', PROXY_PORT, 'PROXY', describeOriginalDst),
      await listen(scratch.netnsPath, VIP4, 80, 'BACKEND', () => ({})),
      await listen(scratch.netnsPath, VIP4, 9999, 'BACKEND', () => ({})),
    );
    const workload = { name: 'test/app', netnsPath: scratch.netnsPath, cgroupPath: scratch.cgroup('app'), excludedPorts: [9999] };

    const dry = await dp.apply({ workloads: [workload] }, { dryRun: true });
    t.false(dry.applied);
    t.notRegex(natRules(scratch), /KERNMESH_OUTPUT/, 'a dry run changes nothing');

    await dp.apply({ workloads: [workload] });
    await dp.apply({ workloads: [workload] }); // idempotent: still one jump, one chain
    t.is(natRules(scratch).match(/-A OUTPUT -p tcp -j KERNMESH_OUTPUT/g)?.length, 1);

    const [hit] = await runClient(scratch, 'app', { host: VIP4, port: 80, sizes: [65536] });
    t.like(hit, { ok: true, role: 'PROXY', info: { family: 'IPv4', address: VIP4, port: 80 } });
    const [excluded] = await runClient(scratch, 'app', { host: VIP4, port: 9999 });
    t.like(excluded, { ok: true, role: 'BACKEND' });

    await dp.apply({ workloads: [] });
    t.notRegex(natRules(scratch), /KERNMESH_OUTPUT/, 'released workloads lose their rules');
    const [after] = await runClient(scratch, 'app', { host: VIP4, port: 80 });
    t.like(after, { ok: true, role: 'BACKEND' });
  } finally {
    await Promise.all(servers.map(closeServer));
    await dp.close({ detach: true });
    t.deepEqual(await scratch.cleanup(), []);
  }
});
