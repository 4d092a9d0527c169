// SPDX-License-Identifier: Apache-2.0
// Timeouts, retries with backoff and budget, circuit breaking: each with a backend that needs it.
import test from 'ava';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';
import { until } from './helpers/wait.ts';

const get = async (port: number, path: string) => {
  const { text } = await rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 5000);
  return { status: statuses(text)[0], text };
};

test('a route timeout answers 504 (flag UT) while the upstream is still thinking', async (t) => {
  const b = await backend(t, 'slow');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, timeout: '150ms' }] })], 'shop/web');
  const start = Date.now();
  const r = await get(p.port, '/slow/2000');
  t.is(r.status, 504);
  t.true(Date.now() - start < 1500, 'answered at the timeout, not when the upstream finished');
  t.regex(await p.server.core.metrics.render(), /response_code="504"[^}]*response_flags="UT"/);
  t.is((await get(p.port, '/slow/10')).status, 200, 'a fast answer still gets through');
});

test('retries on 5xx turn a flaky upstream into a success; without them the client sees the 503', async (t) => {
  const b = await backend(t, 'flaky');
  const objects = [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])];
  const withRetries = await proxy(t, [...objects, obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, retries: { attempts: 3, retryOn: ['5xx'], backoff: { base: '1ms', max: '5ms' } } }] })], 'shop/web');
  t.is((await get(withRetries.port, '/flaky/a/2')).status, 200, 'two failures, then success on the third try');
  t.regex(await withRetries.server.core.metrics.render(), /kernmesh_proxy_retries_total 2/);
  const without = await proxy(t, objects, 'shop/web');
  t.is((await get(without.port, '/flaky/b/1')).status, 503);
});

test('connect failures are retried on another endpoint', async (t) => {
  const b = await backend(t, 'alive');
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port: 1 }, { port: b.port }]),
      obj('ClusterPolicy', 'web', 'shop', { service: 'web', retries: { attempts: 2, retryOn: ['connect-failure'], backoff: { base: '1ms', max: '2ms' } } }),
    ],
    'shop/web',
  );
  for (let i = 0; i < 6; i++) t.is((await get(p.port, `/r${i}`)).status, 200);
});

test('a retry budget stops retry storms: with maxRetries 0 a failure is final', async (t) => {
  const b = await backend(t, 'flaky');
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port: b.port }]),
      obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxRetries: 0 }, retries: { attempts: 3, retryOn: ['5xx'] } }),
    ],
    'shop/web',
  );
  const r = await get(p.port, '/flaky/c/1');
  t.is(r.status, 503);
  t.regex(r.text, /\r\n\r\nfail$/, "the upstream's own answer, not one made up in its place");
  const metrics = await p.server.core.metrics.render();
  t.regex(metrics, /kernmesh_proxy_retry_budget_exhausted_total 1/);
  t.regex(metrics, /response_code="503"[^}]*response_flags="URX"/);
});

test('the circuit breaker answers 503 (flag UO) past maxRequests, and recovers', async (t) => {
  const b = await backend(t, 'slow');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxRequests: 1 } })], 'shop/web');
  const first = get(p.port, '/slow/400');
  // Until the first request is at the backend (and so active in the proxy).
  for (let i = 0; i < 200 && b.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const second = await get(p.port, '/slow/1');
  t.is(second.status, 503);
  t.regex(second.text, /circuit breaker/);
  t.is((await first).status, 200);
  t.is((await get(p.port, '/slow/1')).status, 200, 'closed again once the first finished');
  t.regex(await p.server.core.metrics.render(), /kernmesh_proxy_local_replies_total\{response_flags="UO"\} 1/);
});

// Istio's circuit-breaking example: maxConnections 1, http1MaxPendingRequests 1.
test('at maxConnections a request waits for the connection (within maxPendingRequests), as in Envoy; past that it gets 503 (UO)', async (t) => {
  const b = await backend(t, 'slow');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxConnections: 1, maxPendingRequests: 1 } })], 'shop/web');
  const live = p.server.core.table.services.get('shop/web')!.live;
  const first = get(p.port, '/slow/400');
  for (let i = 0; i < 200 && b.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const second = get(p.port, '/slow/1');
  t.true(await until(() => live.pending === 1), 'the second request waits in line');
  const third = await get(p.port, '/slow/1');
  t.is(third.status, 503);
  t.regex(third.text, /too many requests waiting/);
  t.is((await first).status, 200);
  t.is((await second).status, 200, 'served on the first one\'s connection once it came free');
  t.is(p.server.core.pool.opened, 1, 'never more than one upstream connection');
  t.is(live.pending, 0);
  t.regex(await p.server.core.metrics.render(), /kernmesh_proxy_local_replies_total\{response_flags="UO"\} 1/);
});

test('maxConnections holds for a burst that arrives before any connection is up: connects count from their start, the rest wait their turn', async (t) => {
  const b = await backend(t, 'slow');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxConnections: 2 } })], 'shop/web');
  // Eight requests at once: all reach the proxy while the first connects are still under way.
  const answers = await Promise.all(Array.from({ length: 8 }, () => get(p.port, '/slow/100')));
  t.deepEqual(answers.map((a) => a.status), Array(8).fill(200));
  t.is(p.server.core.pool.opened, 2, 'no more upstream connections than allowed');
  t.is(b.seen.length, 8);
});

test("a request waiting under maxConnections ends at its route's timeout (504 UT) or with its client, and leaves the line", async (t) => {
  const b = await backend(t, 'slow');
  const p = await proxy(
    t,
    [
      service('web', 'shop'),
      endpoints('web', 'shop', [{ port: b.port }]),
      obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxConnections: 1 } }),
      obj('Route', 'web', 'shop', { service: 'web', rules: [{ match: [{ path: { prefix: '/timed' } }], action: { split: [{}] }, timeout: '150ms' }, { action: { split: [{}] } }] }),
    ],
    'shop/web',
  );
  const live = p.server.core.table.services.get('shop/web')!.live;
  const first = get(p.port, '/slow/800');
  for (let i = 0; i < 200 && b.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const start = Date.now();
  const timed = await get(p.port, '/timed');
  t.is(timed.status, 504);
  t.true(Date.now() - start < 700, 'answered at its own timeout, not when the connection came free');
  t.is(live.pending, 0);
  // A client that gives up while in line (a reset: after a FIN alone, requests already sent are still answered).
  const s = connect(p.port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  s.write('GET /gone HTTP/1.1\r\nHost: x\r\n\r\n');
  t.true(await until(() => live.pending === 1));
  s.resetAndDestroy();
  t.true(await until(() => live.pending === 0), 'out of the line once its client is gone');
  t.is(live.waiters?.length, 0);
  t.is((await first).status, 200);
  t.is((await get(p.port, '/slow/1')).status, 200);
  t.deepEqual(b.seen.map((x) => x.url), ['/slow/800', '/slow/1'], 'neither reached the upstream');
});

test('at maxConnections, a request for another endpoint gets room: a released or idle connection elsewhere closes for it', async (t) => {
  const a = await backend(t, 'slow');
  const b = await backend(t, 'slow');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }, { port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxConnections: 1 } })], 'shop/web');
  const seen = () => a.seen.length + b.seen.length;
  // Round robin: the second request is for the other endpoint, whose room the first one's connection holds.
  const first = get(p.port, '/slow/300');
  for (let i = 0; i < 200 && seen() === 0; i++) await new Promise((r) => setTimeout(r, 5));
  const second = await get(p.port, '/slow/1');
  t.is(second.status, 200);
  t.is((await first).status, 200);
  t.deepEqual([a.seen.length, b.seen.length], [1, 1], 'each endpoint got its own request');
  // Now the second one's connection sits idle in the pool: the next request (for the first endpoint) must not wait for its idle timeout.
  const start = Date.now();
  t.is((await get(p.port, '/slow/1')).status, 200);
  t.true(Date.now() - start < 2000);
  t.deepEqual([a.seen.length, b.seen.length].sort(), [1, 2]);
  t.is(p.server.core.pool.opened, 3);
});

test('a request body is sent again on a retry (Content-Length and chunked); one past the replay limit is not retried', async (t) => {
  const b = await backend(t, 'flaky');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, retries: { attempts: 3, retryOn: ['5xx'], backoff: { base: '1ms', max: '5ms' } } }] })], 'shop/web');
  const body = 'x'.repeat(20_000);
  const sha = createHash('sha256').update(body).digest('hex');
  const cl = await rawExchange(p.port, `POST /flaky/post/2 HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, 5000);
  t.is(statuses(cl.text)[0], 200, 'two 503s, then the third try');
  const tries = (url: string) => b.seen.filter((x) => x.url === url).map((x) => [x.bodyBytes, x.bodySha]);
  t.deepEqual(tries('/flaky/post/2'), [[body.length, sha], [body.length, sha], [body.length, sha]], 'every attempt got the whole body');
  const chunked = `${(10_000).toString(16)}\r\n${body.slice(0, 10_000)}\r\n${(10_000).toString(16)}\r\n${body.slice(10_000)}\r\n0\r\n\r\n`;
  const ch = await rawExchange(p.port, `POST /flaky/chunked/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`, 5000);
  t.is(statuses(ch.text)[0], 200);
  t.deepEqual(tries('/flaky/chunked/1'), [[body.length, sha], [body.length, sha]]);
  const big = 'y'.repeat(100_000);
  const nope = await rawExchange(p.port, `POST /flaky/big/1 HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\nConnection: close\r\n\r\n${big}`, 5000);
  t.is(statuses(nope.text)[0], 503, 'too long to keep: the first answer stands');
  t.is(tries('/flaky/big/1').length, 1);
});

test('a body whose first attempt never connected is forwarded whole on the retry, never parsed as a next request', async (t) => {
  const b = await backend(t, 'alive');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: 1 }, { port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', retries: { attempts: 3, retryOn: ['connect-failure'], backoff: { base: '1ms', max: '2ms' } } })], 'shop/web');
  const inner = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
  for (let i = 0; i < 4; i++) {
    const r = await rawExchange(p.port, `POST /post/${i} HTTP/1.1\r\nHost: x\r\nContent-Length: ${inner.length}\r\nConnection: close\r\n\r\n${inner}`, 3000);
    t.is(statuses(r.text)[0], 200);
  }
  t.false(b.seen.some((x) => x.url === '/smuggled'), 'the body was never taken for a request');
  t.true(b.seen.filter((x) => x.url.startsWith('/post/')).every((x) => x.bodyBytes === inner.length));
});
