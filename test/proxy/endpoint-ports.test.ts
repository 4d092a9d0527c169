// SPDX-License-Identifier: Apache-2.0
// Endpoints with ports of their own (Endpoint.ports): a Kubernetes named
// targetPort is resolved per pod, so during a rollout one service port is
// served at different numbers by pods of two versions. Outbound, each
// endpoint is dialled at its own number for the service port asked for;
// inbound, a pod's port counts as the service port that pod serves there.
import test, { type ExecutionContext } from 'ava';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { ProxyCore } from '../../src/proxy/core.ts';
import { ProxyServer } from '../../src/proxy/server.ts';
import { backend, obj, proxy, rawUpstream, table } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';

const VIP = '10.96.0.20';

/** A two-port service whose Service numbers are v1's (the first slice's, as the Kubernetes sync writes them). */
function twoPortService(name: string, protocol: string, v1: { a: number; b: number }) {
  return obj('Service', name, 'shop', {
    hosts: [`${name}.shop.svc.cluster.local`],
    addresses: [VIP],
    ports: [
      { name: 'http', port: 80, targetPort: v1.a, protocol },
      { name: 'metrics', port: 9100, targetPort: v1.b, protocol },
    ],
  });
}

async function get(port: number, headers: Record<string, string> = {}) {
  const h = Object.entries({ Host: 'web.shop.svc.cluster.local', ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const { text } = await rawExchange(port, `GET / HTTP/1.1\r\n${h}Connection: close\r\n\r\n`);
  return { status: statuses(text)[0], backend: /x-backend: (\S+)/i.exec(text)?.[1] };
}

/** What a TCP upstream answers a client that says hello and half-closes. */
function tcpAnswer(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => (got += d));
    c.on('close', () => resolve(got));
    c.on('error', () => c.destroy());
    c.end('hello\n');
  });
}

/** A TCP upstream that answers its name and closes (reading what it is sent, so its socket can close). */
const named = (t: ExecutionContext, name: string) =>
  rawUpstream(t, (s: Socket) => {
    s.resume();
    s.end(name);
  });

test('outbound HTTP: each endpoint is dialled at its own port for the service port the client asked for', async (t) => {
  const [v1http, v1metrics, v2http, v2metrics] = await Promise.all([backend(t, 'v1-http'), backend(t, 'v1-metrics'), backend(t, 'v2-http'), backend(t, 'v2-metrics')]);
  const objects = [
    twoPortService('web', 'http', { a: v1http.port, b: v1metrics.port }),
    obj('Endpoints', 'web', 'shop', {
      endpoints: [
        { address: '127.0.0.1', ports: { http: v1http.port, metrics: v1metrics.port }, labels: { version: 'v1' } },
        { address: '127.0.0.1', ports: { http: v2http.port, metrics: v2metrics.port }, labels: { version: 'v2' } },
      ],
    }),
    obj('ClusterPolicy', 'web', 'shop', { service: 'web', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] }),
    obj('Route', 'web', 'shop', { service: 'web', rules: [{ match: [{ headers: { 'x-version': { exact: 'v2' } } }], action: { split: [{ subset: 'v2' }] } }, { action: { split: [{ subset: 'v1' }] } }] }),
  ];
  // Intercepted connections to the VIP's two ports (the VIP itself is never dialled).
  const http = await proxy(t, objects, null, { originalDst: () => ({ address: VIP, port: 80 }) });
  const metrics = await proxy(t, objects, null, { originalDst: () => ({ address: VIP, port: 9100 }) });
  t.like(await get(http.port), { status: 200, backend: 'v1-http' });
  t.like(await get(http.port, { 'x-version': 'v2' }), { status: 200, backend: 'v2-http' }, 'not v1’s number, the service’s targetPort');
  t.like(await get(metrics.port), { status: 200, backend: 'v1-metrics' });
  t.like(await get(metrics.port, { 'x-version': 'v2' }), { status: 200, backend: 'v2-metrics' });
});

test('outbound TCP: each endpoint is dialled at its own port for the service port the client asked for', async (t) => {
  const [v1a, v1b, v2a, v2b] = await Promise.all([named(t, 'v1-a'), named(t, 'v1-b'), named(t, 'v2-a'), named(t, 'v2-b')]);
  const objects = [
    twoPortService('db', 'tcp', { a: v1a, b: v1b }),
    obj('Endpoints', 'db', 'shop', {
      endpoints: [
        { address: '127.0.0.1', ports: { http: v1a, metrics: v1b } },
        { address: '127.0.0.1', ports: { http: v2a, metrics: v2b } },
      ],
    }),
  ];
  const p = await proxy(t, objects, null, { originalDst: () => ({ address: VIP, port: 9100 }) });
  // Round robin: both endpoints in four connections, each at its own port for "metrics".
  const answers = new Set<string>();
  for (let i = 0; i < 4; i++) answers.add(await tcpAnswer(p.port));
  t.deepEqual([...answers].sort(), ['v1-b', 'v2-b']);
});

/**
 * An inbound listener standing for a v2 pod at 127.0.0.1: its "http" port is
 * the listener's own, which is v1's number for "metrics" (the Service's
 * targetPort). Connections go on to the application at appPort.
 */
async function inboundPod(t: ExecutionContext, appPort: number, protocol: string) {
  const core = new ProxyCore();
  const server = new ProxyServer(core);
  const dial = () => connect(appPort, '127.0.0.1');
  const s = await server.listen({ port: 0, host: '127.0.0.1' }, { inbound: { workload: { workload: 'web', namespace: 'shop', app: 'web', version: 'v2' }, dial } });
  t.teardown(() => server.close());
  const port = (s.address() as AddressInfo).port;
  core.setTable(
    table([
      twoPortService('web', protocol, { a: 8080, b: port }),
      obj('Endpoints', 'web', 'shop', {
        endpoints: [
          { address: '127.0.0.2', ports: { http: 8080, metrics: port }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { http: port, metrics: port + 1 }, labels: { version: 'v2' } },
        ],
      }),
      // Nobody reaches the metrics port from outside the pod.
      obj('AuthorizationPolicy', 'no-metrics', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { ports: [9100] } }] }),
    ]),
  );
  return port;
}

test('inbound HTTP: the pod’s port is the service port this pod serves there, not the one whose targetPort it is', async (t) => {
  const app = await backend(t, 'app');
  const port = await inboundPod(t, app.port, 'http');
  t.like(await get(port), { status: 200, backend: 'app' }, 'authorized as the http port, not denied as metrics');
});

test('inbound TCP: the pod’s port is the service port this pod serves there, not the one whose targetPort it is', async (t) => {
  const port = await inboundPod(t, await named(t, 'app'), 'tcp');
  t.is(await tcpAnswer(port), 'app', 'piped as the http port, not refused as metrics');
});
