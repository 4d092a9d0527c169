// SPDX-License-Identifier: Apache-2.0
// Bad input gets a clear error and leaves the kernel as it was.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { EbpfDatapath, cgroup2Root, nativeAddon } from '../../src/datapath/index.ts';
import type { KmError } from '../../src/errors.ts';
import { Bed, VIP4, withBed } from './helpers/bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

/** Every planned map's contents, as hex, to compare before and after. */
async function snapshot(bed: Bed): Promise<string> {
  const maps = ['km_capture_v1', 'km_xport_v1', 'km_xcidr4_v1', 'km_xcidr6_v1', 'km_settings_v1'] as const;
  const out: string[] = [];
  for (const m of maps) for (const [k, v] of await bed.dp.dump(m)) out.push(`${m} ${k.toString('hex')}=${v.toString('hex')}`);
  return out.sort().join('\n');
}

async function rejects(t: import('ava').ExecutionContext, p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  t.is((err as KmError).code as string, code);
  t.regex(err!.message, message);
}

kernelTest('a missing cgroup, a missing netns and a cgroup outside the attach point are refused; nothing changes', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp({ excludedPorts: [22] });
    const before = await snapshot(bed);
    const good = { name: 'test/app', netnsPath: bed.scratch.netnsPath, cgroupPath: bed.appCgroup };
    await rejects(t, bed.dp.apply({ workloads: [good, { name: 'x', netnsPath: bed.scratch.netnsPath, cgroupPath: join(bed.scratch.cgroupRoot, 'nope') }] }), 'KM_ERR_CGROUP_NOT_FOUND', /cgroup .*nope does not exist/);
    await rejects(t, bed.dp.apply({ workloads: [good, { name: 'y', netnsPath: '/run/netns/kernmesh-does-not-exist', cgroupPath: bed.appCgroup }] }), 'KM_ERR_NETNS_NOT_FOUND', /does not exist/);
    await rejects(t, bed.dp.apply({ workloads: [{ name: 'z', netnsPath: '/proc/self/status', cgroupPath: bed.appCgroup }] }), 'KM_ERR_NETNS_NOT_FOUND', /not a network namespace/);
    await rejects(t, bed.dp.apply({ workloads: [{ ...good, cgroupPath: cgroup2Root() }] }), 'KM_ERR_CGROUP_OUTSIDE_ROOT', /not under/);
    await rejects(t, bed.dp.apply({ workloads: [{ ...good, excludedPorts: [0] }] }), 'KM_ERR_INVALID_SPEC', /excludedPorts/);
    await rejects(t, bed.dp.apply({ workloads: [good, { ...good, name: 'test/twin' }] }), 'KM_ERR_INVALID_SPEC', /are the same netns/);
    t.is(await snapshot(bed), before);
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' }, 'the working state still works');
  });
});

kernelTest('a full map is reported with its capacity and nothing is written', async (t) => {
  await withBed(
    t,
    async (bed) => {
      const more = [1, 2].map((i) => {
        const cg = bed.scratch.cgroup(`extra${i}`);
        return { name: `test/extra${i}`, cgroupPath: cg, captureBy: 'cgroup' as const };
      });
      await bed.dp.apply({ workloads: more });
      const before = await snapshot(bed);
      await rejects(
        t,
        bed.dp.apply({ workloads: [...more, { name: 'test/app', netnsPath: bed.scratch.netnsPath, cgroupPath: bed.appCgroup }] }),
        'KM_ERR_MAP_FULL',
        /km_capture_v1 would hold 3 entries but its capacity is 2/,
      );
      t.is(await snapshot(bed), before);
    },
    { maxWorkloads: 2 },
  );
});

kernelTest('a second agent on the same pins is refused while the first keeps working', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    await rejects(t, EbpfDatapath.open(bed.options()), 'KM_ERR_AGENT_RUNNING', /another kernmesh agent owns/);
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' });
  });
});

kernelTest('bad options (cgroup2 root, missing cgroup, non-bpffs pins, proxy outside, bad port) are refused before anything is loaded', async (t) => {
  const bed = new Bed('badattach');
  try {
    bed.scratch.setup();
    bed.proxyCgroup = bed.scratch.cgroup('proxy');
    await rejects(t, EbpfDatapath.open({ ...bed.options(), attachCgroup: cgroup2Root() }), 'KM_ERR_CGROUP_OUTSIDE_ROOT', /never its root/);
    await rejects(t, EbpfDatapath.open({ ...bed.options(), attachCgroup: join(bed.scratch.cgroupRoot, 'missing') }), 'KM_ERR_CGROUP_NOT_FOUND', /does not exist/);
    mkdirSync(join('/tmp', bed.scratch.id), { recursive: true });
    await rejects(t, EbpfDatapath.open({ ...bed.options(), pinDir: join('/tmp', bed.scratch.id) }), 'KM_ERR_BPFFS', /not on a bpf filesystem/);
    rmSync(join('/tmp', bed.scratch.id), { recursive: true, force: true });
    await rejects(t, EbpfDatapath.open({ ...bed.options(), proxyCgroup: cgroup2Root() }), 'KM_ERR_CGROUP_OUTSIDE_ROOT', /the proxy's cgroup .* is not under/);
    await rejects(t, EbpfDatapath.open({ ...bed.options(), outboundPort: 70000 }), 'KM_ERR_INVALID_SPEC', /outboundPort/);
    t.false(existsSync(bed.scratch.pinDir), 'nothing was pinned');
  } finally {
    t.deepEqual(await bed.stop(), []);
  }
});

kernelTest('native calls name the problem: missing netns, busy port, bad arguments', async (t) => {
  await withBed(t, async (bed) => {
    const n = nativeAddon();
    const missing = t.throws(() => n.listenInNetns('/run/netns/kernmesh-nope', '127.0.0.1', 1234));
    t.is((missing as NodeJS.ErrnoException).code, 'ENOENT');
    t.regex(missing!.message, /does not exist/);
    const busy = t.throws(() => n.listenInNetns(bed.scratch.netnsPath, '127.0.0.1', 15001));
    t.is((busy as NodeJS.ErrnoException).code, 'EADDRINUSE');
    t.throws(() => n.listenInNetns(bed.scratch.netnsPath, 'localhost', 1), { instanceOf: TypeError, message: /IPv4 or IPv6 address/ });
    t.throws(() => n.originalDst(-1 as number), { instanceOf: TypeError });
    t.throws(() => n.netnsCookie(42 as unknown as string), { instanceOf: TypeError, message: /netnsPath must be a string/ });
  });
});
