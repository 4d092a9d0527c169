// SPDX-License-Identifier: Apache-2.0
// The HTTP/1.1 proxy against real clients (curl, a raw socket) and a real Node backend.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backend, endpoints, obj, proxy, rawUpstream, service } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';

const run = promisify(execFile);

async function setup(t: import('ava').ExecutionContext) {
  const b = await backend(t, 'b1');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])], 'shop/web');
  return { b, p, url: `http://127.0.0.1:${p.port}` };
}

/** The proxy bound to shop/web, whose one endpoint is a raw upstream (it answers exactly what onConn writes). */
async function behindRaw(t: import('ava').ExecutionContext, onConn: (s: Socket) => void) {
  return proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: await rawUpstream(t, onConn) }])], 'shop/web');
}

/** Two HTTP/1.0 keep-alive requests on one connection: each answered `status`, saying keep-alive, the connection left open. */
async function twoKeptAlive10(t: import('ava').ExecutionContext, port: number, status: number): Promise<void> {
  const { text, closed } = await rawExchange(port, 'GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', 500);
  t.deepEqual(statuses(text), [status, status]);
  t.is(text.match(/\r\nconnection: keep-alive\r\n/gi)?.length, 2);
  t.false(closed);
}

test('curl through the proxy: headers added, hop-by-hop removed, keep-alive on both sides', async (t) => {
  const { b, p, url } = await setup(t);
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '-H', 'Connection: keep-alive, x-drop-me', '-H', 'x-drop-me: 1', '-H', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', `${url}/a`, `${url}/b`]);
  t.regex(stderr, /Re-using existing connection/);
  const first = JSON.parse(stdout.slice(0, stdout.indexOf('}{') + 1)) as { headers: Record<string, string> };
  t.is(first.headers['x-forwarded-for'], '127.0.0.1');
  t.regex(first.headers['x-request-id']!, /^[0-9a-f-]{36}$/);
  t.is(first.headers['traceparent'], '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'trace context passed on');
  t.is(first.headers['x-drop-me'], undefined, 'headers named in Connection are hop-by-hop');
  t.deepEqual(b.seen.map((s) => s.url), ['/a', '/b']);
  t.is(p.server.core.pool.opened, 1, 'one upstream connection served both requests');
  t.is(p.server.core.pool.reused, 1);
});

test('heads with nothing to rewrite go through byte for byte (names, case, order), plus what the proxy adds', async (t) => {
  // A raw upstream: what it receives, and exactly what it answers.
  const got: string[] = [];
  const answer = 'HTTP/1.1 200 OK\r\nX-Mixed-Case: Value\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 2\r\n\r\nok';
  const p = await behindRaw(t, (s) => s.on('data', (d) => {
    got.push(d.toString('latin1'));
    s.write(answer);
  }));
  const request = 'GET /q?x=1 HTTP/1.1\r\nhost: Web.Shop\r\nAccept: */*\r\nX-Custom: a, b\r\n\r\n';
  // The proxy keeps the connection open: this waits for a second of silence (a loaded machine can be slow to answer).
  const { text } = await rawExchange(p.port, request, 1000);
  t.is(text, answer, 'the response as the upstream sent it');
  t.true(got[0]!.startsWith(request.slice(0, -2)), got[0]);
  t.regex(got[0]!.slice(request.length - 2), /^x-forwarded-for: 127\.0\.0\.1\r\nx-request-id: [0-9a-f-]{36}\r\n\r\n$/);
});

test('a response head written out again (the client asked to close) keeps its reason phrase', async (t) => {
  const p = await behindRaw(t, (s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi')));
  for (const request of ['GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'GET / HTTP/1.0\r\n\r\n']) {
    const { text } = await rawExchange(p.port, request);
    t.true(text.startsWith('HTTP/1.1 200 OK\r\n'), text);
    t.regex(text, /connection: close\r\n\r\nhi$/);
  }
});

test('headers named in any Connection line are hop-by-hop, in requests and in responses', async (t) => {
  const got: string[] = [];
  const p = await behindRaw(t, (s) => s.on('data', (d) => {
    got.push(d.toString('latin1'));
    s.write('HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: x-internal\r\nx-internal: leaked\r\ncontent-length: 2\r\n\r\nok');
  }));
  const { text } = await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: x-secret-hop\r\nx-secret-hop: leaked\r\n\r\n', 500);
  t.regex(text, /^HTTP\/1\.1 200 /);
  t.notRegex(text, /x-internal/i);
  t.notRegex(got.join(''), /x-secret-hop/i);
});

test('an existing x-request-id is kept; x-forwarded-for is appended to', async (t) => {
  const { b, url } = await setup(t);
  await run('curl', ['-sS', '-H', 'x-request-id: abc', '-H', 'x-forwarded-for: 192.0.2.1', `${url}/`]);
  t.is(b.seen[0]!.headers['x-request-id'], 'abc');
  t.is(b.seen[0]!.headers['x-forwarded-for'], '192.0.2.1, 127.0.0.1', 'the real peer is appended');
});

test('request bodies: Content-Length, chunked, and Expect: 100-continue arrive intact', async (t) => {
  const { b, url } = await setup(t);
  const file = join(mkdtempSync(join(tmpdir(), 'kernmesh-body-')), 'body');
  writeFileSync(file, 'x'.repeat(200_000));
  t.teardown(() => rmSync(file, { force: true }));
  await run('curl', ['-sS', '--data-binary', `@${file}`, `${url}/cl`]);
  await run('curl', ['-sS', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, `${url}/chunked-up`]);
  const { stderr } = await run('curl', ['-sS', '-v', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `${url}/expect`]);
  t.regex(stderr, /HTTP\/1\.1 100 Continue/);
  const sha = b.seen[0]!.bodySha;
  t.deepEqual(b.seen.map((s) => [s.url, s.bodyBytes, s.bodySha]), [
    ['/cl', 200_000, sha],
    ['/chunked-up', 200_000, sha],
    ['/expect', 200_000, sha],
  ]);
  t.is(b.seen[1]!.headers['transfer-encoding'], 'chunked');
});

test('chunked responses with trailers pass through', async (t) => {
  const { url } = await setup(t);
  const { stdout } = await run('curl', ['-sS', '--raw', `${url}/chunked`]);
  t.regex(stdout, /hello /);
  t.regex(stdout, /x-checksum: abc123/i, 'the trailer field arrives');
  const { stdout: decoded } = await run('curl', ['-sS', `${url}/chunked`]);
  t.is(decoded, 'hello chunked world');
});

test('pipelined requests are answered in order', async (t) => {
  const { b, p } = await setup(t);
  const req = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const { text } = await rawExchange(p.port, req('/1') + req('/2') + req('/3') + `GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  t.deepEqual(statuses(text), [200, 200, 200, 200]);
  t.deepEqual([...text.matchAll(/"url":"(\/\d)"/g)].map((m) => m[1]), ['/1', '/2', '/3', '/4']);
  t.deepEqual(b.seen.map((s) => s.url), ['/1', '/2', '/3', '/4']);
});

test("pipelined requests followed by the client's FIN are all answered, then the connection closes", async (t) => {
  const { b, p } = await setup(t);
  const { text, closed } = await new Promise<{ text: string; closed: boolean }>((resolve) => {
    const s = connect({ port: p.port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    const timer = setTimeout(() => (s.destroy(), resolve({ text, closed: false })), 3000);
    s.on('data', (c) => (text += c.toString('latin1')));
    s.on('end', () => (clearTimeout(timer), s.destroy(), resolve({ text, closed: true })));
    s.end('GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n');
  });
  t.deepEqual(statuses(text), [200, 200]);
  t.true(closed);
  t.deepEqual(b.seen.map((x) => x.url), ['/a', '/b']);
});

test('HEAD and 204/304 responses carry no body and keep the connection usable', async (t) => {
  const { p } = await setup(t);
  const { text } = await rawExchange(p.port, 'HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.deepEqual(statuses(text), [200, 204, 200]);
});

test('an Upgrade (WebSocket handshake) becomes a tunnel', async (t) => {
  const { p } = await setup(t);
  const got = await new Promise<string>((resolve) => {
    const s = connect(p.port, '127.0.0.1');
    let buf = '';
    s.on('data', (c) => {
      buf += c.toString('latin1');
      if (buf.includes('\r\n\r\n') && !buf.includes('ping-through-tunnel')) s.write('ping-through-tunnel');
      if (buf.includes('ping-through-tunnel')) {
        s.destroy();
        resolve(buf);
      }
    });
    s.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  });
  t.regex(got, /^HTTP\/1\.1 101 /);
  t.regex(got, /ping-through-tunnel$/, 'bytes after the 101 were echoed through the tunnel');
});

test('a 101 the request did not ask for is a bad gateway, never a tunnel past routing and authorization', async (t) => {
  const b = await backend(t, 'b1');
  const deny = obj('AuthorizationPolicy', 'no-admin', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/admin' }] } }] });
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), deny], 'shop/web');
  // The backend answers /status/101 with a 101: then the next request on the connection would have gone straight through.
  const { text, closed } = await rawExchange(p.port, 'GET /status/101 HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n');
  t.deepEqual(statuses(text), [502]);
  t.true(closed);
  t.deepEqual(b.seen.map((s) => s.url), ['/status/101'], '/admin never reached the backend');
});

// Each is answered with an error and a closed connection; none reaches the backend as two requests.
const corpus: Array<[string, string, number]> = [
  ['Content-Length and Transfer-Encoding together', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['two differing Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd', 400],
  ['a bad chunk size', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n', 400],
  ['Transfer-Encoding other than chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
  ['an obfuscated Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400],
  ['obsolete line folding', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n', 400],
  ['bare LF line ends', 'GET / HTTP/1.1\nHost: x\n\n', 400],
  ['a NUL in a header value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', 400],
  ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX-A: 1\r\n\r\n', 400],
  ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
  ['an unknown HTTP version', 'GET / HTTP/2.5\r\nHost: x\r\n\r\n', 505],
  ['a space in the target', 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['a non-numeric Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4a\r\n\r\nabcd', 400],
  ['chunked in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['an oversize head', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`, 431],
];
for (const [what, request, status] of corpus) {
  test(`malformed: ${what} -> ${status} and close`, async (t) => {
    const { b, p } = await setup(t);
    const { text, closed } = await rawExchange(p.port, request);
    t.deepEqual(statuses(text), [status]);
    t.true(closed, 'the connection was closed');
    t.deepEqual(b.seen, [], 'nothing reached the backend');
  });
}

// A lenient upstream (one that takes a bare LF for a line end, as several do) would read what follows
// a bad trailer line as a second request: the proxy must refuse it, not forward it.
const badTrailers: Array<[string, string]> = [
  ['a bare LF', '\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['a line that is not a header field', 'no colon here\r\n\r\n'],
  ['a control byte in a value', 'x-a: 1\u0001\r\n\r\n'],
];
for (const [what, trailer] of badTrailers) {
  test(`malformed: ${what} in a chunked body's trailer section -> 400, and not forwarded`, async (t) => {
    const got: Buffer[] = [];
    const p = await behindRaw(t, (s) => s.on('data', (c: Buffer) => got.push(c)));
    const { text, closed } = await rawExchange(p.port, `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n${trailer}`);
    t.deepEqual(statuses(text), [400]);
    t.regex(text, /trailer/);
    t.true(closed);
    t.false(Buffer.concat(got).toString('latin1').includes(trailer.trim()), 'the trailer never went upstream');
  });
}

test('bytes that are not HTTP at all, on an HTTP listener, get a 400', async (t) => {
  const { b, p } = await setup(t);
  const { text, closed } = await rawExchange(p.port, '\u0016\u0003\u0001garbage that is not http\r\n\r\n');
  t.deepEqual(statuses(text), [400]);
  t.true(closed);
  t.deepEqual(b.seen, []);
});

test('an upstream that is down is answered 503; the proxy keeps serving', async (t) => {
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: 1 }])], 'shop/web');
  const { text } = await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.deepEqual(statuses(text), [503]);
  t.regex(text, /upstream connect error/);
});

test('HTTP/1.0 clients: a chunked response arrives unframed and ends at the close; a sized one keeps a keep-alive connection', async (t) => {
  const { p } = await setup(t);
  const chunked = await rawExchange(p.port, 'GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  const [head, body] = chunked.text.split('\r\n\r\n');
  t.notRegex(head!, /transfer-encoding/i, 'HTTP/1.0 has no chunked coding');
  t.regex(head!, /\r\nconnection: close$/i);
  t.is(body, 'hello chunked world');
  t.true(chunked.closed, 'the close ends the body');
  // Sized responses: the connection stays, and each response says so (else a 1.0 client closes it).
  await twoKeptAlive10(t, p.port, 200);
});

test('HTTP/1.0 requests: Expect is not passed on and no 1xx comes back; two Host headers are refused', async (t) => {
  const { b, p } = await setup(t);
  // Node's backend answers an Expect: 100-continue with a 100 first, which an HTTP/1.0 client would take for the response.
  const { text } = await rawExchange(p.port, 'POST /up HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi');
  t.deepEqual(statuses(text), [200]);
  t.is(b.seen[0]!.headers.expect, undefined);
  t.is(b.seen[0]!.bodyBytes, 2);
  const twoHosts = await rawExchange(p.port, 'GET /h HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n');
  t.deepEqual(statuses(twoHosts.text), [400]);
  t.is(b.seen.length, 1, 'the request with two Hosts went nowhere');
});

test('an empty line between pipelined requests (after a body) is ignored', async (t) => {
  const { b, p } = await setup(t);
  const { text } = await rawExchange(p.port, 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.deepEqual(statuses(text), [200, 200]);
  t.deepEqual(b.seen.map((s) => s.url), ['/a', '/b']);
});

test("the proxy's own answer before the request body was read says connection: close, and closes", async (t) => {
  const b = await backend(t, 'b1');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxRequests: 1 } })], 'shop/web');
  const busy = rawExchange(p.port, 'GET /slow/800 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 3000);
  while (b.seen.length === 0 && p.server.core.table.services.get('shop/web')!.live.active === 0) await new Promise((r) => setTimeout(r, 10));
  // The breaker answers at once, with half the body unread: the rest would be read as the next request,
  // so the connection must end, and the client be told.
  const { text, closed } = await rawExchange(p.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
  t.deepEqual(statuses(text), [503]);
  t.regex(text, /\r\nconnection: close\r\n/);
  t.true(closed);
  t.deepEqual(statuses((await busy).text), [200]);
});

test('an upstream response head over 64 KiB is a bad gateway, even when it arrives whole', async (t) => {
  const big = `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70_000)}\r\ncontent-length: 2\r\n\r\nok`;
  const p = await behindRaw(t, (s) => s.once('data', () => s.write(big)));
  const { text } = await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.deepEqual(statuses(text), [502]);
});

test('HTTP/1.0: no Transfer-Encoding even without a body, no Upgrade, and local replies keep a keep-alive connection', async (t) => {
  // A raw upstream answering HEAD with a chunked head and no body.
  const p = await behindRaw(t, (s) => s.on('data', () => s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n')));
  const head = await rawExchange(p.port, 'HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', 500);
  t.deepEqual(statuses(head.text), [200]);
  t.notRegex(head.text, /transfer-encoding/i);
  // An Upgrade from HTTP/1.0 is ignored (RFC 9110 7.8): it goes upstream as a plain request, never a tunnel.
  const { b, p: q } = await setup(t);
  const up = await rawExchange(q.port, 'GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n');
  t.deepEqual(statuses(up.text), [200]);
  t.is(b.seen[0]!.headers.upgrade, undefined);
  // A local reply (a direct response) says keep-alive too, or the client would close after it.
  const r = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { directResponse: { status: 404, body: 'none\n' } } }] })], 'shop/web');
  await twoKeptAlive10(t, r.port, 404);
});

test('an empty line before a pipelined request is ignored when its CR and LF come in separate reads', async (t) => {
  const { b, p } = await setup(t);
  const text = await new Promise<string>((resolve) => {
    const c = connect(p.port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => (got += d.toString('latin1')));
    c.on('close', () => resolve(got));
    c.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n');
    setTimeout(() => c.write('\r'), 100);
    setTimeout(() => c.write('\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 200);
  });
  t.deepEqual(statuses(text), [200, 200]);
  t.deepEqual(b.seen.map((s) => s.url), ['/a', '/b']);
});
