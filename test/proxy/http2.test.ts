// SPDX-License-Identifier: Apache-2.0
// HTTP/2 (h2c prior knowledge) and gRPC through the proxy: curl, h2load and @grpc/grpc-js.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { type IncomingHttpHeaders, type ServerHttp2Stream, connect as connectH2, constants as h2constants, createServer as createH2 } from 'node:http2';
import { type AddressInfo, createServer as createTcp } from 'node:net';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { ProxyCore } from '../../src/proxy/core.ts';
import { IDLE_TIMEOUT_MS } from '../../src/proxy/http1/idle.ts';
import { h2Server, serveH2 } from '../../src/proxy/http2/session.ts';
import { AccessLog } from '../../src/proxy/telemetry/access-log.ts';
import { blackhole } from './helpers/blackhole.ts';
import { endpoints, obj, proxy, service, table } from './helpers/fixtures.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);

/** An h2c backend answering JSON about each request, with a trailer. */
async function h2Backend(t: ExecutionContext, name: string) {
  const seen: string[] = [];
  /** Each request whole, once its body has arrived. */
  const got: Array<{ path: string; authority: string; body: string }> = [];
  const server = createH2();
  server.on('stream', (stream, headers) => {
    seen.push(String(headers[':path']));
    // A request cut short (a cancelled copy, a malformed one) is the test's to notice, not a crash.
    stream.on('error', () => {});
    let body = '';
    stream.on('data', (c: Buffer) => (body += c));
    stream.on('end', () => {
      got.push({ path: String(headers[':path']), authority: String(headers[':authority']), body });
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-backend': name }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }));
      stream.end(JSON.stringify({ backend: name, path: headers[':path'], method: headers[':method'], body, xff: headers['x-forwarded-for'], rid: headers['x-request-id'] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, seen, got, server };
}

/** An h2c server on loopback port 0 whose streams go to onStream, closed in teardown. */
async function h2Listen(t: ExecutionContext, onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void): Promise<number> {
  const server = createH2();
  server.on('stream', onStream);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

test('curl --http2-prior-knowledge: streams routed and answered, trailers kept, one upstream session', async (t) => {
  const b = await h2Backend(t, 'h2-v1');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])], 'shop/web');
  const log: Array<{ requestId?: string; request?: { path: string } }> = [];
  p.server.core.accessLog = new AccessLog(pino(new Writable({ write: (c, _e, cb) => (log.push(JSON.parse(String(c))), cb()) })), 1);
  // Two curl runs (curl 7.88 trips over a second request on a connection whose first
  // response had trailers, even against a plain node:http2 server; nghttp below multiplexes).
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '--http2-prior-knowledge', '-d', 'hello', `http://127.0.0.1:${p.port}/one`]);
  t.regex(stderr, /< HTTP\/2 200/);
  t.regex(stderr, /< x-checksum: abc/, 'the trailer arrived');
  t.regex(stdout, /"backend":"h2-v1","path":"\/one","method":"POST","body":"hello","xff":"127\.0\.0\.1"/);
  const second = await run('curl', ['-sS', '--http2-prior-knowledge', '-H', 'x-request-id: given-2', `http://127.0.0.1:${p.port}/two`]);
  t.regex(second.stdout, /"path":"\/two"/);
  // The id the proxy made up for /one is the one the backend saw and the one logged; a given one is kept.
  const rid = (JSON.parse(stdout) as { rid: string }).rid;
  t.regex(rid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.is(log.find((l) => l.request?.path === '/one')?.requestId, rid);
  t.regex(second.stdout, /"rid":"given-2"/);
  t.is(log.find((l) => l.request?.path === '/two')?.requestId, 'given-2');
  const multiplexed = await run('nghttp', ['-n', '--stat', `http://127.0.0.1:${p.port}/m1`, `http://127.0.0.1:${p.port}/m2`, `http://127.0.0.1:${p.port}/m3`]);
  t.is((multiplexed.stdout.match(/ 200 /g) ?? []).length, 3, multiplexed.stdout);
  t.deepEqual(b.seen.slice(0, 2), ['/one', '/two']);
  t.deepEqual(b.seen.slice(2).sort(), ['/m1', '/m2', '/m3']);
  t.is(p.server.core.h2.size, 1, 'both streams over one upstream h2c session');
  const metrics = await p.server.core.metrics.render();
  t.regex(metrics, /istio_requests_total\{[^}]*request_protocol="http",response_code="200"[^}]*\} 5/);
});

test("connectionPool.idleTimeout closes the service's unused h2c session", async (t) => {
  const b = await h2Backend(t, 'h2');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { idleTimeout: '200ms' } })], 'shop/web');
  await run('curl', ['-sS', '--http2-prior-knowledge', `http://127.0.0.1:${p.port}/once`]);
  t.is(p.server.core.h2.size, 1);
  // With the 60 s default it would still be open.
  for (let i = 0; i < 300 && p.server.core.h2.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(p.server.core.h2.size, 0);
});

test('h2load: many concurrent streams, all succeed', async (t) => {
  const b = await h2Backend(t, 'h2');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])], 'shop/web');
  const { stdout } = await run('h2load', ['-n', '2000', '-c', '4', '-m', '16', `http://127.0.0.1:${p.port}/load`]);
  t.regex(stdout, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/);
  t.regex(stdout, /status codes: 2000 2xx/);
});

// A gRPC service without .proto files: raw bytes in, raw bytes out.
const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const definition = {
  echo: { path: '/kernmesh.test.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  count: { path: '/kernmesh.test.Echo/Count', requestStream: false, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  slow: { path: '/kernmesh.test.Echo/Slow', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  fail: { path: '/kernmesh.test.Echo/Fail', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
} satisfies grpc.ServiceDefinition;

async function grpcBackend(t: ExecutionContext): Promise<number> {
  const server = new grpc.Server();
  server.addService(definition, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.concat([Buffer.from('echo:'), call.request])),
    count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString());
      for (let i = 1; i <= n; i++) call.write(Buffer.from(String(i)));
      call.end();
    },
    slow: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => setTimeout(() => cb(null, Buffer.from('late')), 2000).unref(),
    fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.teardown(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return port;
}

test('gRPC with @grpc/grpc-js: unary, server streaming, status codes and a deadline, with gRPC telemetry', async (t) => {
  const port = await grpcBackend(t);
  const p = await proxy(t, [service('echo', 'shop', { ports: [{ port: 80, targetPort: port, protocol: 'grpc' }] }), endpoints('echo', 'shop', [{ port }])], 'shop/echo');
  const Client = grpc.makeGenericClientConstructor(definition, 'Echo');
  const client = new Client(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure()) as unknown as Record<string, (...a: unknown[]) => unknown> & grpc.Client;
  t.teardown(() => client.close());

  const unary = await new Promise<Buffer>((resolve, reject) => client.echo!(Buffer.from('hi'), (err: Error | null, res: Buffer) => (err ? reject(err) : resolve(res))));
  t.is(unary.toString(), 'echo:hi');

  const streamed: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = client.count!(Buffer.from('5')) as grpc.ClientReadableStream<Buffer>;
    call.on('data', (b: Buffer) => streamed.push(b.toString()));
    call.on('end', () => resolve());
    call.on('error', reject);
  });
  t.deepEqual(streamed, ['1', '2', '3', '4', '5']);

  const notFound = await new Promise<grpc.ServiceError>((resolve) => client.fail!(Buffer.from(''), (err: grpc.ServiceError) => resolve(err)));
  t.is(notFound.code, grpc.status.NOT_FOUND);
  t.is(notFound.details, 'no such thing', 'grpc-message came through the trailers');

  const started = Date.now();
  const late = await new Promise<grpc.ServiceError>((resolve) => client.slow!(Buffer.from(''), { deadline: Date.now() + 200 }, (err: grpc.ServiceError) => resolve(err)));
  t.is(late.code, grpc.status.DEADLINE_EXCEEDED);
  t.true(Date.now() - started < 1500);

  const metrics = await p.server.core.metrics.render();
  t.regex(metrics, /request_protocol="grpc",response_code="200",grpc_response_status="0"/);
  t.regex(metrics, /request_protocol="grpc",response_code="200",grpc_response_status="5"/);
});

test("gRPC local replies carry the gRPC status of their HTTP status: fault aborts' and a denial's", async (t) => {
  const port = await grpcBackend(t);
  const grpcPort = { ports: [{ port: 80, targetPort: port, protocol: 'grpc' }] };
  const abort = (status: number) => ({ match: [{ path: { prefix: `/abort${status}` } }], action: { split: [{}] }, fault: { abort: { percent: 100, status } } });
  // The aborts are matched on the method path: each rule's prefix is the path of one of the service's methods, renamed.
  const p = await proxy(
    t,
    [
      service('echo', 'shop', grpcPort),
      endpoints('echo', 'shop', [{ port }]),
      obj('Route', 'echo', 'shop', { service: 'echo', rules: [abort(401), abort(404), abort(400), abort(418), abort(503), { action: { split: [{}] } }] }),
      obj('AuthorizationPolicy', 'deny', 'shop', { service: 'echo', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/denied' }] } }] }),
    ],
    'shop/echo',
  );
  const client = new grpc.Client(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const call = (path: string) =>
    new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.from('x'), (err) => resolve(err as grpc.ServiceError)),
    );
  t.is((await call('/abort401/Echo')).code, grpc.status.UNAUTHENTICATED);
  t.is((await call('/abort404/Echo')).code, grpc.status.UNIMPLEMENTED);
  t.is((await call('/abort400/Echo')).code, grpc.status.INTERNAL);
  t.is((await call('/abort418/Echo')).code, grpc.status.UNKNOWN);
  t.is((await call('/abort503/Echo')).code, grpc.status.UNAVAILABLE);
  t.is((await call('/denied/Echo')).code, grpc.status.PERMISSION_DENIED);
  const metrics = await p.server.core.metrics.render();
  t.regex(metrics, /response_code="200",grpc_response_status="16"[^}]*response_flags="FI"/);
});

test('an HTTP/2 request the policy refuses gets its answer over HTTP/2', async (t) => {
  const b = await h2Backend(t, 'h2');
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('AuthorizationPolicy', 'deny', 'shop', { service: 'web', action: 'DENY', rules: [{ to: { paths: [{ prefix: '/admin' }] } }] })], 'shop/web');
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '--http2-prior-knowledge', `http://127.0.0.1:${p.port}/admin`]);
  t.regex(stderr, /< HTTP\/2 403/);
  t.regex(stdout, /RBAC: access denied/);
  t.deepEqual(b.seen, []);
});

test('HTTP/2: x-forwarded-for is appended to; a request with Host instead of :authority is routed by its Host', async (t) => {
  const web = await h2Backend(t, 'web');
  const api = await h2Backend(t, 'api');
  const objects = [service('web', 'shop'), endpoints('web', 'shop', [{ port: web.port }]), service('api', 'shop'), endpoints('api', 'shop', [{ port: api.port }])];
  // Routed by Host: an intercepted connection to an address that is no service's.
  const p = await proxy(t, objects, null, { originalDst: () => ({ address: '10.0.0.9', port: 80 }) });
  const client = connectH2(`http://127.0.0.1:${p.port}`);
  t.teardown(() => client.close());
  const ask = (headers: Record<string, string>) =>
    new Promise<{ status: number; body: string }>((resolve) => {
      const req = client.request({ ':path': '/who', ...headers }).end();
      let status = 0;
      let body = '';
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => (body += c));
      req.on('close', () => resolve({ status, body }));
    });
  const viaHost = await ask({ host: 'api.shop.svc.cluster.local', 'x-forwarded-for': '192.0.2.1' });
  t.is(viaHost.status, 200);
  t.like(JSON.parse(viaHost.body), { backend: 'api', xff: '192.0.2.1, 127.0.0.1' });
  t.like(JSON.parse((await ask({ ':authority': 'web.shop.svc.cluster.local' })).body), { backend: 'web', xff: '127.0.0.1' });
});

test('HTTP/2 streams count against the circuit breaker like HTTP/1.1 requests', async (t) => {
  const server = createH2();
  server.on('stream', (stream) => {
    setTimeout(() => {
      stream.respond({ ':status': 200 });
      stream.end('late');
    }, 400).unref();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', connectionPool: { maxRequests: 1 } })], 'shop/web');
  const { stdout } = await run('nghttp', ['-n', '--stat', `http://127.0.0.1:${p.port}/a`, `http://127.0.0.1:${p.port}/b`]);
  const codes = [...stdout.matchAll(/ (200|503) /g)].map((m) => m[1]).sort();
  t.deepEqual(codes, ['200', '503'], stdout);
  t.is(p.server.core.table.services.get('shop/web')!.live.active, 0, 'every stream gave its slot back');
});

test('HTTP/2 retries: a 503 is retried with the request body sent again, a refused connect goes to another endpoint', async (t) => {
  const server = createH2();
  const bodies: string[] = [];
  let calls = 0;
  server.on('stream', (stream, headers) => {
    let body = '';
    stream.on('data', (c: Buffer) => (body += c));
    stream.on('end', () => {
      bodies.push(body);
      if (String(headers[':path']).startsWith('/flaky') && ++calls <= 2) {
        stream.respond({ ':status': 503 });
        stream.end('busy');
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end(`got ${body.length}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const retries = { attempts: 3, retryOn: ['5xx', 'connect-failure'], backoff: { base: '1ms', max: '5ms' } };
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, retries }] })], 'shop/web');
  const body = 'z'.repeat(30_000);
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '--http2-prior-knowledge', '--data-binary', body, `http://127.0.0.1:${p.port}/flaky`]);
  t.regex(stderr, /< HTTP\/2 200/);
  t.is(stdout, `got ${body.length}`);
  t.deepEqual(bodies.map((b) => b.length), [body.length, body.length, body.length], 'each attempt got the whole body');
  t.regex(await p.server.core.metrics.render(), /kernmesh_proxy_retries_total 2/);

  // A dead endpoint first: its refused connect is retried on the live one.
  const q = await proxy(t, [service('api', 'shop'), endpoints('api', 'shop', [{ port: 1 }, { port }]), obj('ClusterPolicy', 'api', 'shop', { service: 'api', retries })], 'shop/api');
  for (let i = 0; i < 4; i++) {
    const r = await run('curl', ['-sS', '-w', ' %{http_code}', '--http2-prior-knowledge', `http://127.0.0.1:${q.port}/ok${i}`]);
    t.is(r.stdout, 'got 0 200');
  }
  // Without retries, the 503 reaches the client.
  calls = 0;
  const plain = await proxy(t, [service('raw', 'shop'), endpoints('raw', 'shop', [{ port }])], 'shop/raw');
  const r = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--http2-prior-knowledge', `http://127.0.0.1:${plain.port}/flaky`]);
  t.is(r.stdout, '503');
  // With retries but no budget for them (maxRetries 0), the upstream's own 503 reaches the client, flagged URX.
  calls = 0;
  const capped = await proxy(t, [service('capped', 'shop'), endpoints('capped', 'shop', [{ port }]), obj('ClusterPolicy', 'capped', 'shop', { service: 'capped', connectionPool: { maxRetries: 0 }, retries })], 'shop/capped');
  const c = await run('curl', ['-sS', '-w', ' %{http_code}', '--http2-prior-knowledge', `http://127.0.0.1:${capped.port}/flaky`]);
  t.is(c.stdout, 'busy 503', "the upstream's own answer");
  const metrics = await capped.server.core.metrics.render();
  t.regex(metrics, /kernmesh_proxy_retry_budget_exhausted_total 1/);
  t.regex(metrics, /response_code="503"[^}]*response_flags="URX"/);
});

/**
 * A proxy retrying 5xx (with this backoff) to an h2c upstream that refuses the first attempt at once and
 * answers every later one with "got <body>"; the bodies it got, and when the first attempt was refused.
 */
async function refusedOnceThenEcho(t: ExecutionContext, backoff: string) {
  const server = createH2();
  const bodies: string[] = [];
  let refusedFirst = () => {};
  const firstRefused = new Promise<void>((r) => (refusedFirst = r));
  let calls = 0;
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    if (++calls === 1) {
      stream.respond({ ':status': 503 }, { endStream: true });
      return refusedFirst();
    }
    let body = '';
    stream.on('data', (c: Buffer) => (body += c));
    stream.on('end', () => {
      bodies.push(body);
      stream.respond({ ':status': 200 });
      stream.end(`got ${body}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, retries: { attempts: 2, retryOn: ['5xx'], backoff: { base: backoff, max: backoff } } }] })], 'shop/web');
  const client = connectH2(`http://127.0.0.1:${p.port}`);
  t.teardown(() => client.close());
  return { client, bodies, firstRefused };
}

test('HTTP/2: body bytes sent while a retry waits out its backoff reach the next attempt, in order', async (t) => {
  const { client } = await refusedOnceThenEcho(t, '150ms');
  const req = client.request({ ':method': 'POST', ':path': '/x' });
  let answer = '';
  let status = 0;
  req.on('response', (h) => (status = Number(h[':status'])));
  req.on('data', (c: Buffer) => (answer += c));
  const ended = new Promise((r) => req.on('end', r));
  req.write('part1-');
  await new Promise((r) => setTimeout(r, 60));
  req.write('part2-');
  await new Promise((r) => setTimeout(r, 250));
  req.end('part3');
  await ended;
  t.is(status, 200);
  t.is(answer, 'got part1-part2-part3');
});

test('HTTP/2: a body that outgrows the retry buffer while the retry waits still reaches the retry whole', async (t) => {
  const { client, bodies, firstRefused } = await refusedOnceThenEcho(t, '1s');
  // The backoff is jittered (0 to 1 s): the second part is sent during it but for the odd run (when the
  // retry has started by then, the part goes to it as it comes, and the test passes without the case).
  const req = client.request({ ':method': 'POST', ':path': '/upload' });
  let answer = '';
  req.on('data', (c: Buffer) => (answer += c));
  const ended = new Promise((r) => req.on('end', r));
  req.write(Buffer.alloc(10_000, 'a'));
  await firstRefused;
  await new Promise((r) => setTimeout(r, 20));
  // Sent during the backoff: with the 10 000 before, past the 64 KiB a retry keeps.
  req.end(Buffer.alloc(100_000, 'b'));
  await ended;
  t.deepEqual(bodies.map((b) => b.length), [110_000], 'the retry got the whole body');
  t.is(answer, `got ${'a'.repeat(10_000)}${'b'.repeat(100_000)}`);
});

test('HTTP/2: an upstream session that dies mid-response resets the client stream; a cut response never looks whole', async (t) => {
  const server = createH2();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    stream.write('partial');
    setTimeout(() => stream.session!.socket.destroy(), 50);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: (server.address() as AddressInfo).port }])], 'shop/web');
  const client = connectH2(`http://127.0.0.1:${p.port}`);
  client.on('error', () => {});
  t.teardown(() => client.close());
  const req = client.request({ ':path': '/download' }).end();
  const events: string[] = [];
  req.on('data', (c: Buffer) => events.push(`data ${c}`));
  req.on('end', () => events.push('end'));
  req.on('error', () => events.push('error'));
  await new Promise((r) => req.on('close', r));
  t.deepEqual(events, ['data partial', 'error']);
  t.not(req.rstCode, h2constants.NGHTTP2_NO_ERROR);
});

test('an idle upstream h2c session is closed gracefully: a stream still open finishes, the next request opens a new session', async (t) => {
  const server = createH2();
  let sessions = 0;
  server.on('session', () => sessions++);
  server.on('stream', (stream, headers) => {
    stream.respond({ ':status': 200 });
    if (headers[':path'] !== '/slow') return void stream.end('quick');
    // Gaps longer than the idle timeout: the session looks idle while this stream is open.
    let n = 0;
    const tick = setInterval(() => {
      stream.write(`part${n}`);
      if (++n === 3) {
        clearInterval(tick);
        stream.end();
      }
    }, 250);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { H2Upstreams } = await import('../../src/proxy/http2/upstream.ts');
  const ups = new H2Upstreams({ idleTimeoutMs: 100 });
  t.teardown(() => ups.close());
  const port = (server.address() as AddressInfo).port;
  const fetch = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const req = ups.session('127.0.0.1', port).request({ ':path': path });
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => resolve(body));
      req.on('error', reject);
      req.end();
    });
  t.is(await fetch('/slow'), 'part0part1part2', 'the open stream was not cut');
  await new Promise((r) => setTimeout(r, 300));
  t.is(ups.size, 0, 'the idle session was closed and forgotten');
  t.is(await fetch('/again'), 'quick');
  t.is(sessions, 2, 'the next request opened a new session');
});

/** curl over h2c: the status, the body, and what -v said (response headers as "< name: value"). */
const curl = async (url: string, extra: string[] = []) => {
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '--max-time', '5', '--http2-prior-knowledge', '-w', '\n%{http_code}', ...extra, url]);
  const at = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at), verbose: stderr };
};

test('HTTP/2 fault delay: the request (and its body) waits, flagged DI, and the route timeout counts from after the delay', async (t) => {
  const b = await h2Backend(t, 'h2');
  // A delay longer than the route's timeout: Envoy's router (which owns the timeout) runs after the fault filter.
  const rule = { action: { split: [{}] }, timeout: '200ms', fault: { delay: { percent: 100, fixed: '400ms' } } };
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('Route', 'web', 'shop', { service: 'web', rules: [rule] })], 'shop/web');
  const started = Date.now();
  const r = await curl(`http://127.0.0.1:${p.port}/held`, ['-d', 'body-held']);
  const took = Date.now() - started;
  t.is(r.status, 200, r.body);
  t.true(took >= 390, `answered after ${took} ms: not delayed`);
  t.deepEqual(b.got.map((g) => [g.path, g.body]), [['/held', 'body-held']]);
  t.regex(await p.server.core.metrics.render(), /response_code="200"[^}]*response_flags="DI"/);
});

test('HTTP/2 retries.perTryTimeout: a hung attempt is cancelled and retried; without a retry for it, 504 (UT)', async (t) => {
  // The first stream for each path is never answered, later ones at once.
  const tries = new Map<string, number>();
  const port = await h2Listen(t, (stream, headers) => {
    const path = String(headers[':path']);
    tries.set(path, (tries.get(path) ?? 0) + 1);
    stream.on('error', () => {});
    if (tries.get(path) === 1) return;
    stream.respond({ ':status': 200 });
    stream.end('fast');
  });
  const objects = [service('web', 'shop'), endpoints('web', 'shop', [{ port }])];
  const rule = (retryOn: string[]) => obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, timeout: '2s', retries: { attempts: 2, perTryTimeout: '150ms', retryOn, backoff: { base: '1ms', max: '2ms' } } }] });
  const retried = await proxy(t, [...objects, rule(['reset'])], 'shop/web');
  const r = await curl(`http://127.0.0.1:${retried.port}/a`);
  // Without a per-try timeout the hung attempt holds the request until the route's 2 s timeout: 504.
  t.is(r.status, 200, r.body);
  t.is(r.body, 'fast');
  t.is(tries.get('/a'), 2);
  // retriable-status-codes alone does not retry a per-try timeout: the attempt's own 504.
  const notRetried = await proxy(t, [...objects, rule(['retriable-status-codes'])], 'shop/web');
  const s = await curl(`http://127.0.0.1:${notRetried.port}/b`);
  t.is(s.status, 504);
  t.is(s.body, 'upstream per-try timeout');
  t.is(tries.get('/b'), 1);
  t.regex(await notRetried.server.core.metrics.render(), /response_code="504"[^}]*response_flags="UT"/);
});

test('HTTP/2: a reset stream is retried under retryOn reset, not under connect-failure; a session that never connected is a connect failure', async (t) => {
  // The first stream for each path is reset by the backend, later ones answered.
  const tries = new Map<string, number>();
  const port = await h2Listen(t, (stream, headers) => {
    const path = String(headers[':path']);
    tries.set(path, (tries.get(path) ?? 0) + 1);
    stream.on('error', () => {});
    if (tries.get(path) === 1) return void stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
    stream.respond({ ':status': 200 });
    stream.end('second');
  });
  const withRetry = (retryOn: string[], eps = [{ port }]) => proxy(t, [service('web', 'shop'), endpoints('web', 'shop', eps), obj('ClusterPolicy', 'web', 'shop', { service: 'web', retries: { attempts: 2, retryOn, backoff: { base: '1ms', max: '2ms' } } })], 'shop/web');
  const onReset = await withRetry(['reset']);
  const a = await curl(`http://127.0.0.1:${onReset.port}/a`);
  t.is(a.status, 200);
  t.is(a.body, 'second');
  const onConnect = await withRetry(['connect-failure']);
  const b = await curl(`http://127.0.0.1:${onConnect.port}/b`);
  t.is(b.status, 502, 'a reset is no connect failure');
  t.is(tries.get('/b'), 1);
  t.regex(await onConnect.server.core.metrics.render(), /response_code="502"[^}]*response_flags="UC"/);
  // A refused connect under reset alone: not retried, 503 (UF).
  const refused = await withRetry(['reset'], [{ port: 1 }]);
  const c = await curl(`http://127.0.0.1:${refused.port}/c`);
  t.is(c.status, 503);
  t.regex(c.body, /^upstream connect error: .*ECONNREFUSED/);
  t.regex(await refused.server.core.metrics.render(), /kernmesh_proxy_retries_total 0/);
});

test("HTTP/2: the service's connect timeout ends a hanging connect: 503 (UF), or a retry under connect-failure", async (t) => {
  const hole = await blackhole(t);
  const b = await h2Backend(t, 'live');
  const policy = (extra: Record<string, unknown> = {}) => obj('ClusterPolicy', 'web', 'shop', { service: 'web', timeouts: { connect: '100ms' }, ...extra });
  const route = obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, timeout: '1500ms' }] });
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: hole }]), policy(), route], 'shop/web');
  const r = await curl(`http://127.0.0.1:${p.port}/`);
  // With no connect timeout, the route's 1.5 s timeout would answer instead (504).
  t.is(r.status, 503, r.body);
  t.regex(r.body, /^upstream connect error: connect to 127\.0\.0\.1:\d+ timed out/);
  t.regex(await p.server.core.metrics.render(), /response_code="503"[^}]*response_flags="UF"/);
  t.is(p.server.core.h2.size, 0, 'the session that never connected is gone');
  // Half the endpoints hang: every request still gets its answer from the other one.
  const retries = { attempts: 2, retryOn: ['connect-failure'], backoff: { base: '1ms', max: '2ms' } };
  const q = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: hole }, { port: b.port }]), policy({ retries }), route], 'shop/web');
  for (let i = 0; i < 4; i++) t.is((await curl(`http://127.0.0.1:${q.port}/r${i}`)).status, 200);
  t.deepEqual(b.seen.sort(), ['/r0', '/r1', '/r2', '/r3']);
});

test('HTTP/2 circuit breaking: maxPendingRequests (streams waiting for a connecting session) and maxConnections (sessions per service) answer 503 (UO)', async (t) => {
  const hole = await blackhole(t);
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: hole }]), obj('ClusterPolicy', 'web', 'shop', { service: 'web', timeouts: { connect: '1s' }, connectionPool: { maxPendingRequests: 1 } })], 'shop/web');
  const live = p.server.core.table.services.get('shop/web')!.live;
  const first = curl(`http://127.0.0.1:${p.port}/first`);
  t.true(await until(() => live.pending === 1), 'the first stream waits for its session to connect');
  const second = await curl(`http://127.0.0.1:${p.port}/second`);
  t.is(second.status, 503);
  t.is(second.body, 'too many requests waiting for an upstream connection');
  t.is((await first).status, 503, 'the first one ends at its connect timeout');
  t.is(live.pending, 0);
  t.regex(await p.server.core.metrics.render(), /response_code="503"[^}]*response_flags="UO"/);

  // Two endpoints, round robin, one session allowed: the second endpoint's request is refused.
  const b1 = await h2Backend(t, 'one');
  const b2 = await h2Backend(t, 'two');
  const q = await proxy(t, [service('api', 'shop'), endpoints('api', 'shop', [{ port: b1.port }, { port: b2.port }]), obj('ClusterPolicy', 'api', 'shop', { service: 'api', connectionPool: { maxConnections: 1 } })], 'shop/api');
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await curl(`http://127.0.0.1:${q.port}/c${i}`)).status);
  t.deepEqual(statuses.sort(), [200, 200, 503, 503]);
  t.is(b1.seen.length + b2.seen.length, 2);
  t.true(b1.seen.length === 0 || b2.seen.length === 0, 'only one endpoint was reached');
  t.is(q.server.core.table.services.get('shop/api')!.live.connections, 1);
  t.is(q.server.core.h2.size, 1);
});

test('an HTTP/2 redirect carries its Location header', async (t) => {
  const b = await h2Backend(t, 'h2');
  const rules = [{ match: [{ path: { prefix: '/old' } }], action: { redirect: { host: 'new.example', path: '/new', code: 301 } } }, { action: { split: [{}] } }];
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), obj('Route', 'web', 'shop', { service: 'web', rules })], 'shop/web');
  const r = await curl(`http://127.0.0.1:${p.port}/old/page`);
  t.is(r.status, 301);
  t.regex(r.verbose, /< location: http:\/\/new\.example\/new\r?\n/);
  t.deepEqual(b.seen, []);
});

test("passthrough HTTP/2 (no mesh service) gets the mesh's default request timeout", async (t) => {
  const port = await h2Listen(t, (stream) => stream.on('error', () => {})); // never answers
  const mesh = obj('MeshSettings', 'default', 'kernmesh-system', { defaultTimeouts: { request: '200ms' } });
  const p = await proxy(t, [mesh], null, { originalDst: () => ({ address: '127.0.0.1', port }) });
  // Without a timeout the request would hang until curl's own 5 s limit.
  const r = await curl(`http://127.0.0.1:${p.port}/hangs`);
  t.is(r.status, 504);
  t.is(r.body, 'deadline exceeded');
  t.regex(await p.server.core.metrics.render(), /response_code="504"[^}]*response_flags="UT"/);
});

test('HTTP/2 mirroring: requests and their bodies are copied to the shadow (authority -shadow), whose answers and failures never reach the client', async (t) => {
  const b = await h2Backend(t, 'real');
  const shadow = await h2Backend(t, 'shadow');
  const mirrored = (to: string) => obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, mirror: { service: to, percent: 100 } }] });
  const p = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), service('shadow', 'shop'), endpoints('shadow', 'shop', [{ port: shadow.port }]), mirrored('shadow')], 'shop/web');
  const get = await curl(`http://127.0.0.1:${p.port}/copied`, ['-H', 'host: web.shop']);
  t.is(get.status, 200);
  t.regex(get.body, /"backend":"real"/);
  const post = await curl(`http://127.0.0.1:${p.port}/posted`, ['-H', 'host: web.shop', '--data-binary', 'copy-me']);
  t.regex(post.body, /"body":"copy-me"/);
  t.true(await until(() => shadow.got.length === 2), 'the shadow got both copies');
  t.deepEqual(shadow.got.map((g) => [g.path, g.authority, g.body]).sort(), [
    ['/copied', 'web.shop-shadow', ''],
    ['/posted', 'web.shop-shadow', 'copy-me'],
  ]);
  t.regex(await p.server.core.metrics.render(), /kernmesh_proxy_mirrored_requests_total 2/);
  // A shadow that refuses every connect changes nothing for the real request.
  const q = await proxy(t, [service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }]), service('dead', 'shop'), endpoints('dead', 'shop', [{ port: 1 }]), mirrored('dead')], 'shop/web');
  const r = await curl(`http://127.0.0.1:${q.port}/still`, ['-d', 'fine']);
  t.is(r.status, 200);
  t.regex(r.body, /"body":"fine"/);
});

test("HTTP/2 mirroring: a shadow that trickles its answer for ever is reset at the shadow's request timeout, the real answer untouched", async (t) => {
  const b = await h2Backend(t, 'real');
  // Headers at once, then a byte every 50 ms, never the end: never quiet for the timeout, never done.
  const copies: Array<{ start: number; closedAt: number; rstCode: number }> = [];
  const port = await h2Listen(t, (stream) => {
    const copy = { start: Date.now(), closedAt: 0, rstCode: -1 };
    copies.push(copy);
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    const drip = setInterval(() => stream.write('.'), 50);
    stream.once('close', () => {
      clearInterval(drip);
      copy.closedAt = Date.now();
      copy.rstCode = stream.rstCode ?? -1;
    });
  });
  const objects = [
    service('web', 'shop'),
    endpoints('web', 'shop', [{ port: b.port }]),
    service('shadow', 'shop'),
    endpoints('shadow', 'shop', [{ port }]),
    obj('ClusterPolicy', 'shadow', 'shop', { service: 'shadow', timeouts: { request: '1s' } }),
    obj('Route', 'web', 'shop', { service: 'web', rules: [{ action: { split: [{}] }, mirror: { service: 'shadow', percent: 100 } }] }),
  ];
  const p = await proxy(t, objects, 'shop/web');
  const client = connectH2(`http://127.0.0.1:${p.port}`);
  t.teardown(() => client.destroy());
  client.on('error', () => {});
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = client.request({ ':method': 'POST', ':path': '/copied', ':authority': 'web.shop' });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
    req.end('copy-me');
  });
  t.is(answer.status, 200);
  t.regex(answer.body, /"backend":"real","path":"\/copied","method":"POST","body":"copy-me"/);
  t.true(await until(() => copies.length === 1, 2000), 'the shadow got its copy');
  // The real answer did not wait for the shadow, which was still being fed when it came.
  t.is(copies[0]!.closedAt, 0, 'the copy was still open when the real answer came');
  // Generous slack over 1 s; without a bound on the whole copy it would drip on until teardown.
  t.true(await until(() => copies[0]!.closedAt > 0, 5000), 'the copy was ended');
  t.is(copies[0]!.rstCode, h2constants.NGHTTP2_CANCEL, 'by a reset (CANCEL) from the proxy');
  t.true(copies[0]!.closedAt - copies[0]!.start >= 500, `reset ${copies[0]!.closedAt - copies[0]!.start} ms in, not before its timeout`);
});

test('an idle downstream h2c connection gets a GOAWAY and is closed, counted from its last stream\'s end', async (t) => {
  t.is(h2Server().idleTimeoutMs, IDLE_TIMEOUT_MS, "by default, the HTTP/1.1 side's idle timeout");
  const port = await h2Listen(t, (stream, headers) => {
    stream.on('error', () => {});
    const answer = () => (stream.respond({ ':status': 200 }), stream.end('done'));
    if (headers[':path'] === '/slow') setTimeout(answer, 600);
    else answer();
  });
  const core = new ProxyCore();
  core.setTable(table([service('web', 'shop'), endpoints('web', 'shop', [{ port }])]));
  t.teardown(() => (core.pool.close(), core.h2.close()));
  // A listener serving h2c as the proxy's do, with a short idle timeout (the proxy's is minutes).
  const h2 = h2Server(200);
  const listener = createTcp((s) => serveH2(h2, s, null, { core, origDst: null, service: 'shop/web', source: null }));
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => listener.close(() => r())));
  const client = connectH2(`http://127.0.0.1:${(listener.address() as AddressInfo).port}`);
  t.teardown(() => client.destroy());
  client.on('error', () => {});
  const goaways: Array<{ code: number; last: number }> = [];
  let closedAt = 0;
  client.on('goaway', (code, last) => goaways.push({ code, last }));
  client.on('close', () => (closedAt = Date.now()));
  const get = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': path, ':authority': 'web.shop' });
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => resolve(body));
      req.on('error', reject);
    });
  // Longer than the idle timeout, but a stream is open all along: not idle.
  t.is(await get('/slow'), 'done');
  t.is(await get('/quick'), 'done');
  const ended = Date.now();
  t.deepEqual(goaways, [], 'no GOAWAY while streams were open');
  t.true(await until(() => closedAt > 0, 2000), 'the idle connection was closed');
  t.deepEqual(goaways[0], { code: h2constants.NGHTTP2_NO_ERROR, last: 3 }, 'a graceful GOAWAY naming the last stream taken');
  t.true(closedAt - ended >= 150, `closed ${closedAt - ended} ms after its last stream ended`);
});
