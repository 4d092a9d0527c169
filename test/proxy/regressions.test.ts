// SPDX-License-Identifier: Apache-2.0
// Found in review: each would desynchronise a connection, leak a counter or bypass a policy.
import test, { type ExecutionContext } from 'ava';
import { connect, createServer, type AddressInfo } from 'node:net';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';

test('a body left unread by a local answer is never parsed as the next request', async (t) => {
  const b = await backend(t, 'web');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxRequests: 1 } })], 'shop/web');
  const slow = rawExchange(p.port, 'GET /slow/400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 3000);
  for (let i = 0; i < 200 && b.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  const { text, closed } = await rawExchange(p.port, `POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
  t.deepEqual(statuses(text), [503], 'the circuit breaker answered once');
  t.true(closed);
  await slow;
  t.false(b.seen.some((s) => s.url === '/smuggled'));
});

test('a fault delay is not counted against the route timeout; a request whose client left during it is never sent', async (t) => {
  const b = await backend(t, 'web');
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port: b.port }]),
      obj('Route', 'web', 'shop', { service: 'web', rules: [{ match: [{ path: { prefix: '/delay' } }], action: { split: [{}] }, timeout: '150ms', fault: { delay: { percent: 100, fixed: '400ms' } } }, { action: { split: [{}] } }] }),
    ],
    'shop/web',
  );
  // The delay (400 ms) is longer than the timeout (150 ms): the timeout starts after it, as in Envoy.
  const { text } = await rawExchange(p.port, 'GET /delay/a HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000);
  t.deepEqual(statuses(text), [200, 200]);
  t.deepEqual(b.seen.map((s) => s.url), ['/delay/a', '/ok'], 'in order');
  t.regex(await p.server.core.metrics.render(), /response_code="200"[^}]*response_flags="DI"/);
  // The client goes away (a reset: a FIN alone is a half-close, still owed its answer) while its
  // request is held: when the delay ends, nothing is sent.
  const s = connect(p.port, '127.0.0.1');
  s.write('GET /delay/gone HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((r) => setTimeout(r, 100));
  s.resetAndDestroy();
  await new Promise((r) => setTimeout(r, 500));
  t.false(b.seen.some((x) => x.url === '/delay/gone'));
});

test('a route timeout past what a timer can wait ("720h": none) is held, not turned into a 1 ms wake-up loop', async (t) => {
  const b = await backend(t, 'web');
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port: b.port }]),
      obj('Route', 'web', 'shop', { service: 'web', rules: [{ match: [{ path: { prefix: '/fast' } }], action: { split: [{}] }, timeout: '100ms' }, { action: { split: [{}] }, timeout: '720h', fault: { delay: { percent: 100, fixed: '300ms' } } }] }),
    ],
    'shop/web',
  );
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  // One connection: the first request's timer is still pending while the second waits out its delay.
  const { text } = await rawExchange(p.port, 'GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000);
  t.deepEqual(statuses(text), [200, 200]);
  t.deepEqual(warnings.filter((w) => w === 'TimeoutOverflowWarning'), []);
});

test('an upstream that sends bytes after a complete response is not reused', async (t) => {
  const server = createServer((s) => s.on('data', () => s.write('HTTP/1.1 204 No Content\r\n\r\nEXTRA-BYTES-THAT-ARE-NOT-A-RESPONSE')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port }])], 'shop/web');
  const { text } = await rawExchange(p.port, 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.deepEqual(statuses(text), [204, 204]);
  t.is(p.server.core.pool.opened, 2, 'the tainted connection was not handed to the second request');
});

test('a large response does not leave its pooled connection paused', async (t) => {
  const big = 'x'.repeat(1 << 20);
  const server = createServer((s) => s.on('data', () => s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n${big}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: (server.address() as AddressInfo).port }])], 'shop/web');
  const started = Date.now();
  const got = await new Promise<number>((resolve) => {
    const c = connect(p.port, '127.0.0.1');
    let n = 0;
    c.on('data', (d) => {
      n += d.length;
      if (n >= 2 * big.length) {
        c.destroy();
        resolve(n);
      }
    });
    c.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
  });
  t.true(got >= 2 * big.length);
  t.true(Date.now() - started < 5000);
  t.is(p.server.core.pool.opened, 1);
});

async function denyAdmin(t: ExecutionContext) {
  const b = await backend(t, 'web');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('AuthorizationPolicy', 'deny', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/admin' }] } }] })], 'shop/web');
  return { b, p };
}

test('dot segments and absolute-form targets cannot walk around a path policy', async (t) => {
  const { b, p } = await denyAdmin(t);
  for (const target of ['/x/../admin', '/x/%2e%2e/admin', 'http://web.shop/admin', '/./admin']) {
    const { text } = await rawExchange(p.port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    t.deepEqual(statuses(text), [403], target);
  }
  const { text } = await rawExchange(p.port, 'GET /docs/../public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.deepEqual(statuses(text), [200]);
  t.deepEqual(b.seen.map((s) => s.url), ['/public'], 'the upstream gets the path the policy saw');
  const bad = await rawExchange(p.port, 'GET admin HTTP/1.1\r\nHost: x\r\n\r\n');
  t.deepEqual(statuses(bad.text), [400]);
});

test('closed tunnels give their circuit-breaker slot back', async (t) => {
  const b = await backend(t, 'web');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxRequests: 1 } })], 'shop/web');
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => {
      const c = connect(p.port, '127.0.0.1');
      c.once('data', () => {
        c.destroy();
        resolve();
      });
      c.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    });
  }
  for (let i = 0; i < 100 && p.server.core.table.services.get('shop/web')!.live.active > 0; i++) await new Promise((r) => setTimeout(r, 5));
  const { text } = await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.deepEqual(statuses(text), [200]);
});

test('responses read through the shared upstream buffer arrive intact, with backpressure, while other upstreams keep reading', async (t) => {
  // Every pooled upstream socket reads into one buffer (onread): a byte kept by reference instead of
  // copied would be overwritten by the next read of any connection. A slow client holds its bytes
  // queued while a second, fast exchange keeps that buffer busy.
  const pattern = (seed: number, n: number) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 10)) & 0xff;
    return b;
  };
  const bodies = new Map([['/big', pattern(1, 6 << 20)], ['/small', pattern(2, 3000)]]);
  const server = createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const path = buf.slice(4, buf.indexOf(' ', 4));
        buf = buf.slice(end + 4);
        const body = bodies.get(path)!;
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`);
        s.write(body);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: (server.address() as AddressInfo).port }])], 'shop/web');
  const fetchBody = (path: string, slow: boolean) =>
    new Promise<Buffer>((resolve, reject) => {
      const c = connect(p.port, '127.0.0.1');
      const parts: Buffer[] = [];
      let total = 0;
      let bodyAt = -1;
      let length = 0;
      c.on('data', (d) => {
        parts.push(d);
        total += d.length;
        if (bodyAt < 0) {
          const all = Buffer.concat(parts);
          const headEnd = all.indexOf('\r\n\r\n');
          if (headEnd < 0) return;
          bodyAt = headEnd + 4;
          length = Number(/content-length: (\d+)/i.exec(all.subarray(0, headEnd).toString('latin1'))?.[1]);
        }
        if (total - bodyAt >= length) {
          c.destroy();
          resolve(Buffer.concat(parts).subarray(bodyAt, bodyAt + length));
        }
        if (slow) {
          // Reads a little, then stops long enough for the proxy's write queue to fill.
          c.pause();
          setTimeout(() => c.resume(), 2);
        }
      });
      c.on('error', reject);
      c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
  const fast = (async () => {
    const got: Buffer[] = [];
    for (let i = 0; i < 100; i++) got.push(await fetchBody('/small', false));
    return got;
  })();
  const [big, small] = await Promise.all([fetchBody('/big', true), fast]);
  t.true(big.equals(bodies.get('/big')!), 'the slow client got every byte of the large body as sent');
  t.true(small.every((b) => b.equals(bodies.get('/small')!)));
});
