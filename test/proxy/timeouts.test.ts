// SPDX-License-Identifier: Apache-2.0
// Per-try, connect and idle timeouts, the pending-requests breaker, and which statuses are retried.
import test from 'ava';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { blackhole } from './helpers/blackhole.ts';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';
import { until } from './helpers/wait.ts';

const get = async (port: number, path: string) => {
  const { text } = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 5000);
  return { status: statuses(text)[0], text };
};

/** Resolves true when it happens within ms, false otherwise. */
const within = (ms: number, wait: (done: () => void) => void) =>
  new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    wait(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });

test('a per-try timeout gives up on a hung attempt and tries again within the route timeout', async (t) => {
  const b = await backend(t, 'hangs');
  const objects = [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])];
  const rule = (retries: Record<string, unknown> | undefined) => obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, timeout: '1500ms', ...(retries ? { retries } : {}) }] });
  const perTry = await proxy(t, [...objects, rule({ attempts: 2, perTryTimeout: '150ms', backoff: { base: '1ms', max: '2ms' } })], 'shop/web');
  const r = await get(perTry.port, '/hang-first/a/4000');
  t.is(r.status, 200);
  t.regex(r.text, /fast$/, 'the second attempt answered');
  t.is(b.seen.length, 2);
  // Without it the first attempt holds the request until the route timeout.
  const whole = await proxy(t, [...objects, rule({ attempts: 2, backoff: { base: '1ms', max: '2ms' } })], 'shop/web');
  t.is((await get(whole.port, '/hang-first/b/4000')).status, 504);
});

test("the service's connect timeout ends a connect that hangs: 503 (UF) before the route timeout", async (t) => {
  const port = await blackhole(t);
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port }]),
      obj('ClusterPolicy', 'web', 'shop', { service: 'web', timeouts: { connect: '100ms' } }),
      obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, timeout: '800ms' }] }),
    ],
    'shop/web',
  );
  const r = await get(p.port, '/');
  // With the 1 s default instead, the route's 800 ms timeout would answer first (504).
  t.is(r.status, 503);
  t.regex(r.text, /upstream connect error: connect to 127\.0\.0\.1:\d+ timed out/);
  t.regex(await p.server.core.metrics.render(), /response_code="503"[^}]*response_flags="UF"/);
});

test('maxPendingRequests: past it, a request waiting for an upstream connection is refused 503 (UO)', async (t) => {
  const port = await blackhole(t);
  const p = await proxy(
    t,
    [service('web', 'shop'), endpoints('web', 'shop', [{ port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', timeouts: { connect: '1s' }, connectionPool: { maxPendingRequests: 1 } })],
    'shop/web',
  );
  const first = get(p.port, '/first');
  const live = p.server.core.table.services.get('shop/web')!.live;
  t.true(await until(() => live.pending === 1), 'the first request waits for its connect');
  const second = await get(p.port, '/second');
  t.is(second.status, 503);
  t.regex(second.text, /too many requests waiting/);
  t.is((await first).status, 503, 'the first one ends at its connect timeout');
  t.is(live.pending, 0);
});

test('retryOn decides which statuses are retried: gateway errors, any 5xx, or listed codes', async (t) => {
  // A backend answering each path's status once, then 200.
  const seen = new Map<string, number>();
  const server = createServer((s: Socket) => {
    s.on('data', (d) => {
      const path = /^GET (\S+)/.exec(String(d))![1]!;
      const n = (seen.get(path) ?? 0) + 1;
      seen.set(path, n);
      const status = n === 1 ? Number(path.split('/')[2]) : 200;
      s.write(`HTTP/1.1 ${status} X\r\ncontent-length: 0\r\n\r\n`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const withRetry = async (retryOn: string[], extra: Record<string, unknown> = {}) =>
    (
      await proxy(
        t,
        [service('web', 'shop'), endpoints('web', 'shop', [{ port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', retries: { attempts: 1, retryOn, backoff: { base: '1ms', max: '2ms' }, ...extra } })],
        'shop/web',
      )
    ).port;
  const gateway = await withRetry(['gateway-error']);
  t.is((await get(gateway, '/g/503')).status, 200);
  t.is((await get(gateway, '/g/500')).status, 500, 'a 500 is not a gateway error');
  const any5xx = await withRetry(['5xx']);
  t.is((await get(any5xx, '/x/500')).status, 200);
  t.is((await get(any5xx, '/x/429')).status, 429);
  const listed = await withRetry(['retriable-status-codes'], { retriableStatusCodes: [409] });
  t.is((await get(listed, '/l/409')).status, 200);
  t.is((await get(listed, '/l/503')).status, 503, 'only the listed codes');
});

test("connectionPool.idleTimeout closes the service's unused upstream connections", async (t) => {
  const b = await backend(t, 'pooled');
  const closed: Array<Promise<void>> = [];
  b.server.on('connection', (s: Socket) => closed.push(new Promise((r) => s.once('close', () => r()))));
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { idleTimeout: '200ms' } })], 'shop/web');
  t.is((await get(p.port, '/')).status, 200);
  t.is(closed.length, 1);
  t.deepEqual(Object.values(p.server.core.pool.sizes()), [1], 'kept for reuse at first');
  // With the 60 s default it would still be open.
  t.true(await within(3000, (done) => void closed[0]!.then(done)), 'the proxy closed it once idle');
  t.deepEqual(Object.values(p.server.core.pool.sizes()), [0]);
});

test('timeouts.idle closes a quiet TCP connection; timeouts.connect bounds its connect', async (t) => {
  const echo = createServer((s: Socket) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => echo.close(() => r())));
  const echoPort = (echo.address() as AddressInfo).port;
  const tcpService = (port: number, timeouts: Record<string, string>) => [
    service('db', 'shop', { ports: [{ port: 5432, targetPort: port, protocol: 'tcp' }] }),
    endpoints('db', 'shop', [{ port }]),
    obj('ClusterPolicy', 'db', 'shop', { service: 'db', timeouts }),
  ];
  const p = await proxy(t, tcpService(echoPort, { idle: '300ms' }), 'shop/db');
  const c = connect(p.port, '127.0.0.1');
  t.teardown(() => c.destroy());
  const echoed = await new Promise<string>((r) => {
    c.once('data', (d) => r(String(d)));
    c.write('ping');
  });
  t.is(echoed, 'ping');
  // With the 1 h default it would stay open.
  t.true(await within(3000, (done) => c.once('close', done)), 'closed after 300 ms of silence');

  const hole = await blackhole(t);
  const q = await proxy(t, tcpService(hole, { connect: '100ms' }), 'shop/db');
  const started = Date.now();
  const d = connect(q.port, '127.0.0.1');
  d.on('error', () => {});
  t.teardown(() => d.destroy());
  t.true(await within(3000, (done) => d.once('close', done)), 'the client is let go when the upstream cannot be reached');
  t.true(Date.now() - started < 900, 'at the configured 100 ms, not the 1 s default');
});
