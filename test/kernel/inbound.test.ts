// SPDX-License-Identifier: Apache-2.0
// Inbound interception: a client in another network namespace connects to a
// captured pod's address; the datapath hands the connection, at socket
// lookup, to the proxy's inbound listener inside the pod (no address
// rewrite), and the proxy passes it on to the application at the same
// address from inside the pod, reporting it as the destination. The
// application tells who connected to it: the pod's own address through the
// proxy, the client itself without.
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { Agent } from '../../src/agent/agent.ts';
import { MeshStore } from '../../src/config/store.ts';
import { EbpfDatapath, Scratch, decodeAddrKey } from '../../src/datapath/index.ts';
import { silentLogger } from '../../src/log.ts';
import { obj, service } from '../proxy/helpers/fixtures.ts';
import { RedisServer } from '../redis/helpers/redis-server.ts';
import { scratchAgentConfig } from './helpers/agent-bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

const POD_IP = '10.201.0.2';
const CLIENT_IP = '10.201.0.1';
const POD_IP6 = 'fd00:201::2';
const CLIENT_IP6 = 'fd00:201::1';
const H2APP = `require('http2').createServer().on('stream', (s) => { s.respond({ ':status': 200 }); s.end('h2 remote=' + s.session.socket.remoteAddress); }).listen(8082, '0.0.0.0', () => console.log('up'))`;
const V6APP = `require('http').createServer((q, r) => r.end('v6 remote=' + q.socket.remoteAddress)).listen({ port: 8083, host: '::', ipv6Only: true }, () => console.log('up'))`;
const APP = `require('http').createServer((q, r) => r.end('remote=' + q.socket.remoteAddress)).listen(8080, '0.0.0.0', () => console.log('up'))`;
/** Bound only to the pod's address, not to every address (so not to loopback). */
/** On a port declared HTTP: served as HTTP however late its client speaks. */
const LATE_APP = `require('http').createServer((q, r) => r.end('late remote=' + q.socket.remoteAddress)).listen(8086, '0.0.0.0', () => console.log('up'))`;
const POD_IP_APP = `require('http').createServer((q, r) => r.end('pod-ip-only remote=' + q.socket.remoteAddress)).listen(8084, '${POD_IP}', () => console.log('up'))`;

kernelTest('inbound: connections arriving at a pod’s port go through the proxy’s inbound listener, and straight to the application again once it is gone', async (t) => {
  const redis = await new RedisServer().start();
  const scratch = new Scratch('inbound');
  const client = `${scratch.id}-c`;
  let agent: Agent | undefined;
  try {
    scratch.setup();
    // A client namespace wired to the pod by a veth pair made inside the two namespaces.
    execFileSync('ip', ['netns', 'add', client]);
    execFileSync('ip', ['-n', client, 'link', 'set', 'lo', 'up']);
    const [a, b] = [`kmi${process.pid % 10000}a`, `kmi${process.pid % 10000}b`];
    scratch.ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', client);
    scratch.ip('addr', 'add', `${POD_IP}/30`, 'dev', a);
    scratch.ip('link', 'set', a, 'up');
    execFileSync('ip', ['-n', client, 'addr', 'add', `${CLIENT_IP}/30`, 'dev', b]);
    execFileSync('ip', ['-n', client, 'link', 'set', b, 'up']);
    scratch.ip('-6', 'addr', 'add', `${POD_IP6}/64`, 'dev', a, 'nodad');
    execFileSync('ip', ['-n', client, '-6', 'addr', 'add', `${CLIENT_IP6}/64`, 'dev', b, 'nodad']);

    const app = scratch.cgroup('app');
    for (const code of [APP, H2APP, V6APP, POD_IP_APP, LATE_APP]) {
      const server = scratch.spawn('app', process.execPath, ['-e', code]);
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (c) => reject(new Error(`the application exited (${c})`)));
      });
    }
    const curl = async () => {
      const r = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '--max-time', '5', `http://${POD_IP}:8080/`]).catch((e: { stderr: string }) => ({ stdout: `failed: ${e.stderr}` }));
      return r.stdout;
    };
    t.is(await curl(), `remote=${CLIENT_IP}`, 'before the agent: straight to the application');

    const store = new MeshStore(redis.client());
    await store.write([
      // No protocol declared: detected per connection, so bytes that are not HTTP are TCP (declared http, they would get a 400).
      { op: 'put', object: service('web', 'shop', { addresses: ['10.96.0.80'], ports: [{ port: 80, targetPort: 8080 }] }) },
      { op: 'put', object: obj('Endpoints', 'web', 'shop', { endpoints: [{ address: POD_IP, port: 8080, labels: { app: 'web', version: 'v1' } }] }) },
      { op: 'put', object: obj('AuthorizationPolicy', 'no-admin', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/admin' }] } }] }) },
      // About the source: the calling pod's proxy enforces it; the destination cannot tell callers apart (they come from the node).
      { op: 'put', object: obj('AuthorizationPolicy', 'only-shop', 'shop', { service: 'web', action: 'ALLOW', rules: [{ from: { namespaces: ['shop'] } }] }) },
      // Declared http: a client that speaks after detection's 100 ms is still served as HTTP, path rules and all.
      { op: 'put', object: service('late', 'shop', { addresses: ['10.96.0.86'], ports: [{ port: 80, targetPort: 8086, protocol: 'http' }] }) },
      { op: 'put', object: obj('Endpoints', 'late', 'shop', { endpoints: [{ address: POD_IP, port: 8086, labels: { app: 'late' } }] }) },
      { op: 'put', object: obj('AuthorizationPolicy', 'late-no-admin', 'shop', { service: 'late', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/admin' }] } }] }) },
    ]);
    scratch.enter('agent');
    agent = new Agent(
      scratchAgentConfig(scratch, redis, {
        workloads: [{ name: 'web-0', namespace: 'shop', netnsPath: scratch.netnsPath, cgroupPath: app, labels: { app: 'web', version: 'v1' }, addresses: [POD_IP, POD_IP6], inboundPorts: [8080, 8082, 8083, 8084, 8086] }],
      }),
      silentLogger,
    );
    await agent.start();

    t.is(await curl(), `remote=${POD_IP}`, 'through the inbound listener: the application sees the proxy connecting from inside its pod');
    t.is(await curl(), `remote=${POD_IP}`);
    const podIpOnly = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '--max-time', '5', `http://${POD_IP}:8084/`]);
    t.is(podIpOnly.stdout, `pod-ip-only remote=${POD_IP}`, 'an application bound only to its pod address is reached through the proxy too');
    // The pod's addresses are same-node splice targets of the proxy's connections.
    const local = (await (agent.datapath as EbpfDatapath).dump('km_local_v1')).map(([k]) => decodeAddrKey(k)).sort();
    t.deepEqual(local, [POD_IP, POD_IP6].sort());
    // Authorization at the destination: what the policy denies never reaches the application.
    const denied = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '-w', ' %{http_code}', '--max-time', '5', `http://${POD_IP}:8080/admin/x`]);
    t.regex(denied.stdout, /RBAC: access denied.* 403$/s);
    // IPv6 arrivals go to the IPv6 inbound listener; the application is reached at the pod's IPv6 address.
    const v6 = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '--max-time', '5', `http://[${POD_IP6}]:8083/`]);
    t.is(v6.stdout, `v6 remote=${POD_IP6}`);
    // h2c (gRPC's transport) through the inbound side too.
    const h2 = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '--http2-prior-knowledge', '--max-time', '5', `http://${POD_IP}:8082/`]);
    t.is(h2.stdout, `h2 remote=${POD_IP}`);
    const metrics = await agent.core.metrics.render();
    t.regex(metrics, /istio_requests_total\{reporter="destination",[^}]*destination_workload="web"[^}]*destination_service="web\.shop\.svc\.cluster\.local"[^}]*response_code="200"[^}]*\} 2/);
    t.regex(metrics, /istio_requests_total\{reporter="destination",[^}]*response_code="403",[^}]*response_flags="RBAC"[^}]*\} 1/);
    t.regex(metrics, /istio_requests_total\{reporter="destination",[^}]*destination_service="10\.201\.0\.2:8082"[^}]*response_code="200"[^}]*\} 1/);
    // Not HTTP: passed through as TCP (the application answers its own 400), counted as a destination TCP connection.
    const notHttp = (port: number) => promisify(execFile)('ip', ['netns', 'exec', client, 'bash', '-c', `exec 3<>/dev/tcp/${POD_IP}/${port}; printf 'not http at all\\r\\n\\r\\n' >&3; timeout 5 cat <&3`]).catch((e: { stdout: string }) => e);
    t.regex((await notHttp(8084)).stdout, /^HTTP\/1\.1 400/);
    t.regex(await agent.core.metrics.render(), /istio_tcp_connections_opened_total\{reporter="destination",[^}]*destination_workload="web"[^}]*\} 1/);
    // On web's port, the path DENY (it cannot look at TCP) refuses TCP altogether, as Istio reads such a rule.
    t.is((await notHttp(8080)).stdout, '');
    t.regex(await agent.core.metrics.render(), /istio_tcp_connections_closed_total\{reporter="destination",[^}]*response_flags="RBAC"[^}]*\} 1/);

    // A client that says nothing for 300 ms, on a port declared http: still HTTP (an undeclared port would have
    // been taken for a server-first protocol and piped, and the path DENY would have refused the connection).
    const late = (path: string) => promisify(execFile)('ip', ['netns', 'exec', client, 'bash', '-c', `exec 3<>/dev/tcp/${POD_IP}/8086; sleep 0.3; printf 'GET ${path} HTTP/1.1\\r\\nHost: late\\r\\nConnection: close\\r\\n\\r\\n' >&3; timeout 5 cat <&3`]).catch((e: { stdout: string }) => e);
    t.regex((await late('/')).stdout, new RegExp(`^HTTP/1\\.1 200[^]*late remote=${POD_IP.replace(/\./g, '\\.')}$`));
    t.regex((await late('/admin')).stdout, /^HTTP\/1\.1 403[^]*RBAC: access denied/);

    // A port that was not listed is not taken.
    const other = scratch.spawn('app', process.execPath, ['-e', APP.replace('8080', '8081')]);
    await new Promise<void>((resolve) => other.stdout!.once('data', () => resolve()));
    const r = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '--max-time', '5', `http://${POD_IP}:8081/`]);
    t.is(r.stdout, `remote=${CLIENT_IP}`);

    // The agent dies (nothing released: its keys and link stay pinned) and its listeners close with the process:
    // the emptied sockmap slot leaves arriving connections to the application.
    await (agent.datapath as EbpfDatapath).close();
    await agent.proxy.close();
    const keys = () => JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${scratch.pinDir}/km_inbound_v1`]).toString()).length;
    t.is(keys(), 10, 'the dead agent’s keys are still there (2 addresses × 5 ports)');
    t.true(readdirSync(`${scratch.pinDir}/links`).some((n) => n.startsWith('inbound-')), 'and its netns link');
    t.is(await curl(), `remote=${CLIENT_IP}`, 'fail-open: a closed listener leaves the connection to the application');
    await agent.stop();
    agent = undefined;

    // A new agent takes inbound interception back. This time the client's namespace plays the node:
    // its addresses are node addresses, and 8085 is an inbound port nothing listens on.
    agent = new Agent(
      scratchAgentConfig(scratch, redis, {
        nodeAddresses: [CLIENT_IP, CLIENT_IP6],
        workloads: [{ name: 'web-0', namespace: 'shop', netnsPath: scratch.netnsPath, cgroupPath: app, labels: { app: 'web' }, addresses: [POD_IP, POD_IP6], inboundPorts: [8080, 8083, 8085] }],
      }),
      silentLogger,
    );
    await agent.start();
    t.is(keys(), 6, 'the new agent dropped what the dead one left and set its own');
    const dp = agent.datapath as EbpfDatapath;
    t.deepEqual((await dp.dump('km_nodeaddr_v1')).map(([k]) => decodeAddrKey(k)).sort(), [CLIENT_IP, CLIENT_IP6].sort());
    const before = dp.counters();
    // This test process is in the proxy's cgroup, so its connections from the node are the proxy's own: taken.
    t.is(await curl(), `remote=${POD_IP}`, 'after a restart, the proxy’s connection from a node address still goes through the inbound listener');
    const v6proxy = await promisify(execFile)('ip', ['netns', 'exec', client, 'curl', '-sS', '--max-time', '5', `http://[${POD_IP6}]:8083/`]);
    t.is(v6proxy.stdout, `v6 remote=${POD_IP6}`);
    t.is((await dp.dump('km_dials_v1')).length, 0, 'a recorded connect is forgotten once established');
    // kubelet: the node, but not the proxy. Its probes reach the application itself, and fail when it is not there.
    const kubelet = (args: string[]) => scratch.run('kubelet', 'ip', ['netns', 'exec', client, ...args], { netns: false, timeoutMs: 10_000 });
    t.is((await kubelet(['curl', '-sS', '--max-time', '5', `http://${POD_IP}:8080/`])).stdout, `remote=${CLIENT_IP}`, 'an httpGet probe from the node reaches the application directly');
    t.is((await kubelet(['curl', '-sS', '--max-time', '5', `http://[${POD_IP6}]:8083/`])).stdout, `v6 remote=${CLIENT_IP6}`);
    const probe = await kubelet(['bash', '-c', `exec 3<>/dev/tcp/${POD_IP}/8085`]);
    t.not(probe.code, 0, 'a tcpSocket probe of a port nothing listens on fails (the proxy would have accepted it)');
    t.regex(probe.stderr, /refused/);
    const d = ((a, b) => (n: keyof typeof a) => b[n] - a[n])(before, dp.counters());
    t.is(d('inbound_node_passed'), 3n);
    t.is(d('inbound_dial_saved'), 2n);
    t.true(d('inbound_assigned') >= 2n);
  } finally {
    await agent?.stop({ detach: true }).catch((err: Error) => t.fail(`stop: ${err.message}`));
    // The client namespace goes before the scratch area: while the scratch lock exists, a run killed
    // right here still has it swept by the next one (it is named after the scratch id).
    try {
      execFileSync('ip', ['netns', 'del', client], { stdio: 'pipe' });
    } catch {
      /* never made */
    }
    t.deepEqual(await scratch.cleanup(), []);
    await redis.stop();
  }
});
