// SPDX-License-Identifier: Apache-2.0
// Protocol detection at the listener: late and unusual HTTP clients are still served as HTTP (routing,
// authorization, headers), and only a client that says nothing is taken for a server-first protocol.
import test, { type ExecutionContext } from 'ava';
import { connect } from 'node:net';
import { backend, endpoints, obj, proxy, service } from './helpers/fixtures.ts';
import { statuses } from './helpers/raw.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A proxy bound to shop/web (its port declared HTTP, or not declared), with a DENY on /admin unless told. */
async function setup(t: ExecutionContext, declared: boolean, withDeny = true) {
  const b = await backend(t, 'b1');
  const ports = [{ port: 80, targetPort: b.port, ...(declared ? { protocol: 'http' } : {}) }];
  const deny = obj('AuthorizationPolicy', 'no-admin', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/admin' }] } }] });
  const p = await proxy(t, [service('web', 'shop', { ports }), endpoints('web', 'shop', [{ port: b.port }]), ...(withDeny ? [deny] : [])], 'shop/web');
  return { b, p };
}

/** Connects, then sends each string (numbers: a pause in ms first); resolves with all that came back by the close. */
function conversation(port: number, parts: Array<string | number>): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    let text = '';
    c.on('data', (d) => (text += d.toString('latin1')));
    c.on('close', () => resolve(text));
    c.on('error', reject);
    c.on('connect', async () => {
      for (const part of parts) {
        if (typeof part === 'number') await sleep(part);
        else c.write(part);
      }
    });
  });
}

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`;

test('a declared HTTP port waits for a client that connects ahead of its request: it is served as HTTP', async (t) => {
  const { b, p } = await setup(t, true);
  // 300 ms of silence is three times the server-first timeout (a pool that connects ahead, a busy client).
  const text = await conversation(p.port, [300, GET('/late')]);
  t.deepEqual(statuses(text), [200]);
  t.is(b.seen[0]!.headers['x-forwarded-for'], '127.0.0.1', 'through the HTTP proxy, not a TCP pipe');
  // Authorization by path applies too: the same late client asking for /admin is refused with a 403, not reset.
  t.deepEqual(statuses(await conversation(p.port, [300, GET('/admin')])), [403]);
});

test('a port not declared HTTP: a request line that starts in time and finishes late is still HTTP', async (t) => {
  const { b, p } = await setup(t, false);
  const request = GET('/slow-line');
  const text = await conversation(p.port, [request.slice(0, 1), 300, request.slice(1)]);
  t.deepEqual(statuses(text), [200]);
  t.is(b.seen[0]!.headers['x-forwarded-for'], '127.0.0.1');
});

test('a port not declared HTTP: unusual methods and a leading empty line are HTTP', async (t) => {
  const { b, p } = await setup(t, false);
  t.deepEqual(statuses(await conversation(p.port, ['M-SEARCH /ssdp HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n'])), [200]);
  t.deepEqual(statuses(await conversation(p.port, [`\r\n${GET('/crlf')}`])), [200]);
  t.deepEqual(b.seen.map((s) => [s.method, s.url, s.headers['x-forwarded-for']]), [
    ['M-SEARCH', '/ssdp', '127.0.0.1'],
    ['GET', '/crlf', '127.0.0.1'],
  ]);
});

test('a port not declared HTTP: a request that came in time is HTTP even when the proxy was too busy to read it before its timeout', async (t) => {
  const { b, p } = await setup(t, false);
  const c = connect(p.port, '127.0.0.1');
  let text = '';
  c.on('data', (d) => (text += d.toString('latin1')));
  const closed = new Promise((r) => c.on('close', r));
  await new Promise((r) => c.on('connect', r));
  while (p.server.activeConnections === 0) await sleep(5);
  // The request is in the proxy's socket before its detection timer is due, but this process (the proxy's)
  // is then busy past the timer: when the loop turns again, the timer runs before the socket is read.
  c.write(GET('/busy'));
  const until = performance.now() + 250;
  while (performance.now() < until);
  await closed;
  t.deepEqual(statuses(text), [200]);
  t.is(b.seen[0]!.headers['x-forwarded-for'], '127.0.0.1');
});

test('a port not declared HTTP: a client that says nothing is still taken for a server-first protocol', async (t) => {
  // (No path DENY here: a TCP connection cannot be checked by path, so such a rule would refuse it.)
  const { b, p } = await setup(t, false, false);
  // The HTTP backend, spoken to later as opaque TCP: it answers the bytes itself, with no proxy headers added.
  const text = await conversation(p.port, [300, GET('/tcp')]);
  t.deepEqual(statuses(text), [200]);
  t.is(b.seen[0]!.headers['x-forwarded-for'], undefined, 'piped as TCP');
});
