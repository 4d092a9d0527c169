// SPDX-License-Identifier: Apache-2.0
// The eBPF path with real sockets: who the client reached, and what the maps
// and counters say. See test/kernel/helpers/bed.ts for the topology.
import { PROXY_PORT, VIP4, VIP4_OTHER, VIP6, withBed } from './helpers/bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

kernelTest('a captured client dialling a VIP lands on the proxy, which learns the VIP from originalDst', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    const v4 = await bed.client({ host: VIP4, port: 80 });
    t.like(v4, { ok: true, role: 'PROXY', info: { family: 'IPv4', address: VIP4, port: 80 } });
    const v6 = await bed.client({ host: VIP6, port: 80 });
    t.like(v6, { ok: true, role: 'PROXY', info: { family: 'IPv6', address: VIP6, port: 80 } });
    const c = bed.dp.counters();
    t.is(c.connect4_redirected, 1n);
    t.is(c.connect6_redirected, 1n);
    t.is(c.getsockopt_answered, 2n);
    t.is(c.sockops_active, 2n);
    t.is(c.sockops_passive, 2n);
  });
});

kernelTest('1 B, 64 KiB and 16 MiB arrive intact; the small frames are spliced, the 16 MiB one turns bulk and finishes on the normal stack, in order', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    const before = bed.dp.counters();
    const sizes = [1, 64 * 1024, 16 * 1024 * 1024];
    const lines = await (await import('../../src/datapath/selftest/run.ts')).runClient(bed.scratch, 'app', { host: VIP4, port: 80, sizes });
    t.is(lines.length, 3);
    for (const [i, line] of lines.entries()) t.like(line, { ok: true, role: 'PROXY' }, `frame of ${sizes[i]} bytes`);
    const after = bed.dp.counters();
    const payload = BigInt(sizes.reduce((a, b) => a + b, 0));
    const small = BigInt(sizes[0]! + sizes[1]!);
    const spliced = after.bytes_redirected - before.bytes_redirected;
    // Both directions of the small frames are spliced (the request and its echo); the bulk frame crosses the
    // 4 MiB-per-100 ms line and goes back to TCP, whose flow control can pace it (the frames' hashes matched).
    t.true(spliced >= 2n * small, `bytes_redirected rose by ${spliced}`);
    t.true(spliced < 2n * payload, `bulk bytes left the splice: ${spliced} of ${2n * payload}`);
    t.true(after.msg_redirected > before.msg_redirected);
    t.is(after.msg_miss, before.msg_miss);
  });
});

kernelTest('an uncaptured workload is not redirected, and capture takes effect on its next connect', async (t) => {
  await withBed(t, async (bed) => {
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'BACKEND' });
    t.true(bed.dp.counters().skip_not_captured > 0n);
    const dry = await bed.dp.apply(
      { workloads: [{ name: 'test/app', netnsPath: bed.scratch.netnsPath, cgroupPath: bed.appCgroup }] },
      { dryRun: true },
    );
    t.false(dry.applied);
    t.regex(dry.plan.join('\n'), /\+ km_capture_v1: capture test\/app \(netns \d+\) as #1/);
    t.deepEqual(await bed.dp.dump('km_capture_v1'), [], 'a dry run writes nothing');
    await bed.captureApp();
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' });
    await bed.dp.apply({ workloads: [] });
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'BACKEND' });
  });
});

kernelTest('excluded ports (per workload and global) and excluded CIDRs go straight to the backend', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp({ excludedPorts: [9999] }, { excludedCidrs: ['10.97.0.0/16'] });
    t.like(await bed.client({ host: VIP4, port: 9999 }), { ok: true, role: 'BACKEND' });
    t.like(await bed.client({ host: VIP4_OTHER, port: 80 }), { ok: true, role: 'BACKEND' });
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' });
    let c = bed.dp.counters();
    t.is(c.skip_excluded_port, 1n);
    t.is(c.skip_excluded_cidr, 1n);

    await bed.captureApp({}, { excludedPorts: [9999] });
    t.like(await bed.client({ host: VIP4, port: 9999 }), { ok: true, role: 'BACKEND' });
    t.like(await bed.client({ host: VIP4_OTHER, port: 80 }), { ok: true, role: 'PROXY' }, 'the CIDR exclusion was pruned');
    c = bed.dp.counters();
    t.is(c.skip_excluded_port, 2n);
  });
});

kernelTest("the proxy's own connects are not redirected: by its cgroup and by SO_MARK", async (t) => {
  await withBed(
    t,
    async (bed) => {
      await bed.captureApp();
      // From the proxy's cgroup, inside the captured netns.
      t.like(await bed.client({ host: VIP4, port: 80 }, 'proxy'), { ok: true, role: 'BACKEND' });
      // From the app's cgroup, but with the proxy's mark on the socket.
      t.like(await bed.client({ host: VIP4, port: 80, mark: 0x539 }), { ok: true, role: 'BACKEND' });
      t.like(await bed.client({ host: VIP4, port: 80, mark: 0x538 }), { ok: true, role: 'PROXY' }, 'another mark is redirected');
      t.is(bed.dp.counters().skip_proxy, 2n);
    },
    { proxyMark: 0x539 },
  );
});

kernelTest('loopback destinations are left alone', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    // 127.0.0.1:15001 is the proxy itself: reached directly, with nothing to answer for originalDst.
    const r = await bed.client({ host: '127.0.0.1', port: PROXY_PORT });
    t.like(r, { ok: true, role: 'PROXY' });
    t.regex(r.info?.error ?? '', /not redirected/);
    t.is(bed.dp.counters().skip_loopback, 1n);
  });
});

kernelTest('with a stale heartbeat, fail-open connects straight through and fail-closed refuses', async (t) => {
  await withBed(
    t,
    async (bed) => {
      await bed.captureApp();
      // Ten seconds old with a two-second timeout (0, "never", if the machine booted less than 10 s ago).
      const now = process.hrtime.bigint();
      const stale = now > 10_000_000_000n ? now - 10_000_000_000n : 0n;
      bed.dp.heartbeat(stale);
      t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'BACKEND' });
      t.is(bed.dp.counters().fail_open, 1n);

      await bed.captureApp({}, { failMode: 'closed' });
      const refused = await bed.client({ host: VIP4, port: 80 });
      t.like(refused, { ok: false, stage: 'connect', code: 'EPERM' });
      t.is(bed.dp.counters().fail_closed, 1n);

      bed.dp.startHeartbeat(200);
      t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' }, 'a live heartbeat redirects again');
    },
    { heartbeatTimeoutMs: 2000 },
  );
});

kernelTest('a v4-mapped IPv6 connect is redirected as IPv4 and spliced with the IPv4 listener', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    const r = await bed.client({ host: `::ffff:${VIP4}`, port: 80, sizes: [65536] });
    t.like(r, { ok: true, role: 'PROXY', info: { family: 'IPv4', address: VIP4, port: 80 } });
    const c = bed.dp.counters();
    t.is(c.connect6_redirected, 1n);
    t.is(c.sockops_active, 1n);
    t.is(c.sockops_passive, 1n);
    t.true(c.bytes_redirected >= 2n * 65536n);
  });
});

kernelTest('with splicing off, connects are still redirected but bytes take the normal stack', async (t) => {
  await withBed(
    t,
    async (bed) => {
      await bed.captureApp();
      const r = await bed.client({ host: VIP4, port: 80, sizes: [65536] });
      t.like(r, { ok: true, role: 'PROXY', info: { address: VIP4, port: 80 } });
      const c = bed.dp.counters();
      t.is(c.connect4_redirected, 1n);
      t.is(c.getsockopt_answered, 1n);
      t.is(c.sockops_active + c.sockops_passive + c.msg_redirected, 0n);
    },
    { splice: false },
  );
});

kernelTest('a workload captured by cgroup (a host process tree) is redirected; its neighbours in the netns are not', async (t) => {
  await withBed(t, async (bed) => {
    await bed.dp.apply({ workloads: [{ name: 'host/app', captureBy: 'cgroup', cgroupPath: bed.appCgroup }] });
    t.is(bed.dp.currentSettings().cgroupCaptures, 1);
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY', info: { address: VIP4 } });
    bed.scratch.cgroup('other');
    t.like(await bed.client({ host: VIP4, port: 80 }, 'other'), { ok: true, role: 'BACKEND' });
  });
});

kernelTest('per-workload IPv4 CIDRs, IPv6 CIDRs and v4-mapped destinations are excluded by the right trie', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp({ excludedCidrs: ['10.97.0.0/16'] }, { excludedCidrs: ['fd00:96::/64'] });
    t.like(await bed.client({ host: VIP4_OTHER, port: 80 }), { ok: true, role: 'BACKEND' }, "the workload's own IPv4 CIDR");
    t.like(await bed.client({ host: `::ffff:${VIP4_OTHER}`, port: 80 }), { ok: true, role: 'BACKEND' }, 'the same, dialled v4-mapped');
    t.like(await bed.client({ host: VIP6, port: 80 }), { ok: true, role: 'BACKEND' }, 'the global IPv6 CIDR');
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' }, 'outside every CIDR');
    t.is(bed.dp.counters().skip_excluded_cidr, 3n);
    // Moved from the workload to the mesh: the per-workload entry is pruned, the global one applies.
    await bed.captureApp({}, { excludedCidrs: ['10.97.0.0/16'] });
    t.like(await bed.client({ host: VIP4_OTHER, port: 80 }), { ok: true, role: 'BACKEND' });
    t.like(await bed.client({ host: VIP6, port: 80 }), { ok: true, role: 'PROXY' });
  });
});
