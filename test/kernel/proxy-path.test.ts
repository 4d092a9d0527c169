// SPDX-License-Identifier: Apache-2.0
// The whole outbound path: a captured pod dials a Service VIP, the kernel
// steers it to the proxy's listener inside the pod's netns, the proxy asks
// originalDst, routes by VIP to the service's endpoint, and curl gets the answer.
import { IptablesDatapath, Scratch, nativeAddon } from '../../src/datapath/index.ts';
import { socketFd } from '../../src/datapath/selftest/echo.ts';
import { ProxyCore } from '../../src/proxy/core.ts';
import { ProxyServer } from '../../src/proxy/server.ts';
import { backend, endpoints, service, table } from '../proxy/helpers/fixtures.ts';
import { PROXY_PORT, VIP4, withBed } from './helpers/bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

async function meshProxy(t: import('ava').ExecutionContext, netnsPath: string) {
  // The backend lives on the host's loopback: the proxy's upstream side is the node's network.
  const b = await backend(t, 'reviews-v1');
  const core = new ProxyCore();
  core.setTable(table([service('reviews', 'shop', { addresses: [VIP4], ports: [{ port: 80, targetPort: b.port, protocol: 'http' }] }), endpoints('reviews', 'shop', [{ port: b.port }])]));
  const server = new ProxyServer(core);
  await server.listen({ fd: nativeAddon().listenInNetns(netnsPath, '127.0.0.1', PROXY_PORT) }, { originalDst: (s) => nativeAddon().originalDst(socketFd(s)) });
  return { b, server };
}

kernelTest('eBPF: a pod dials a Service VIP and the proxy routes it to the service endpoint (curl)', async (t) => {
  await withBed(t, async (bed) => {
    // The bed's stand-in listeners are replaced by the real proxy.
    await Promise.all(bed.servers.splice(0, 2).map((s) => new Promise((r) => s.close(r))));
    const { b, server } = await meshProxy(t, bed.scratch.netnsPath);
    try {
      await bed.captureApp();
      const r = await bed.scratch.run('app', 'curl', ['-sS', '--max-time', '5', `http://${VIP4}/reviews/1`, `http://${VIP4}/reviews/2`]);
      t.is(r.code, 0, r.stderr);
      t.regex(r.stdout, /"backend":"reviews-v1".*"url":"\/reviews\/1".*"backend":"reviews-v1".*"url":"\/reviews\/2"/);
      t.deepEqual(b.seen.map((s) => s.url), ['/reviews/1', '/reviews/2']);
      const c = bed.dp.counters();
      t.is(c.connect4_redirected, 1n, 'one keep-alive connection from curl');
      t.true(c.msg_redirected > 0n, 'the app<->proxy bytes were spliced');
      t.is(c.getsockopt_answered, 1n);
    } finally {
      await server.close();
    }
  });
});

kernelTest('iptables: the same proxy, the same curl, behind REDIRECT and conntrack', async (t) => {
  const scratch = new Scratch('ipproxy');
  const dp = new IptablesDatapath({ outboundPort: PROXY_PORT });
  let server: ProxyServer | undefined;
  try {
    scratch.setup();
    scratch.addVip(VIP4);
    const proxied = await meshProxy(t, scratch.netnsPath);
    server = proxied.server;
    await dp.apply({ workloads: [{ name: 'test/app', netnsPath: scratch.netnsPath, cgroupPath: scratch.cgroup('app') }] });
    const r = await scratch.run('app', 'curl', ['-sS', '--max-time', '5', `http://${VIP4}/reviews/9`]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /"backend":"reviews-v1".*"url":"\/reviews\/9"/);
    t.is(server.core.pool.opened, 1);
  } finally {
    await server?.close();
    await dp.close({ detach: true });
    t.deepEqual(await scratch.cleanup(), []);
  }
});
