// SPDX-License-Identifier: Apache-2.0
// The downstream idle timeout is the agent's proxyIdleTimeout: idle HTTP/1.1 and h2c clients, and silent
// ones on a port declared HTTP, are let go after it, and only after it.
import test, { type ExecutionContext } from 'ava';
import { type ClientHttp2Session, connect as connectH2, constants as h2constants, createServer as createH2 } from 'node:http2';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { Agent } from '../../src/agent/agent.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { backend, endpoints, service, table } from './helpers/fixtures.ts';
import { until } from './helpers/wait.ts';

/** An h2c backend answering "ok" to every stream. */
async function h2Backend(t: ExecutionContext): Promise<number> {
  const server = createH2();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

/**
 * The proxy of an agent made from this configuration (not started: only its proxy serves), with web
 * (HTTP/1.1) and api (h2c) each on a listener of its own.
 */
async function agentProxy(t: ExecutionContext, config: Record<string, unknown>, h1Port: number, h2Port: number) {
  const agent = new Agent(parseAgentConfig({ node: 'n1', mode: 'off', ...config }));
  agent.core.setTable(table([service('web', 'shop'), endpoints('web', 'shop', [{ port: h1Port }]), service('api', 'shop'), endpoints('api', 'shop', [{ port: h2Port }])]));
  t.teardown(() => agent.proxy.close());
  const port = async (svc: string) => ((await agent.proxy.listen({ port: 0, host: '127.0.0.1' }, { service: svc })).address() as AddressInfo).port;
  return { agent, web: await port('shop/web'), api: await port('shop/api') };
}

/** A keep-alive HTTP/1.1 connection that has had one answer; closedAt is set when the proxy closes it. */
async function idleHttp1(t: ExecutionContext, port: number) {
  const s = connect(port, '127.0.0.1');
  t.teardown(() => s.destroy());
  const state = { closedAt: 0, answeredAt: 0, socket: s as Socket };
  s.on('error', () => {});
  s.on('close', () => (state.closedAt = Date.now()));
  let text = '';
  await new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      // The backend's answer is JSON in one piece, framed by content-length: its closing brace ends it.
      if (/\r\n\r\n[\s\S]*\}$/.test(text)) resolve();
    });
    s.write('GET /one HTTP/1.1\r\nHost: web.shop\r\n\r\n');
  });
  t.regex(text, /^HTTP\/1\.1 200 /);
  state.answeredAt = Date.now();
  return state;
}

/** An h2c connection that has had one stream answered; closedAt is set when it closes, goaway when one came. */
async function idleH2(t: ExecutionContext, port: number) {
  const client: ClientHttp2Session = connectH2(`http://127.0.0.1:${port}`);
  t.teardown(() => client.destroy());
  const state = { closedAt: 0, answeredAt: 0, goaway: -1 };
  client.on('error', () => {});
  client.on('goaway', (code) => (state.goaway = code));
  client.on('close', () => (state.closedAt = Date.now()));
  const body = await new Promise<string>((resolve, reject) => {
    const req = client.request({ ':path': '/one', ':authority': 'api.shop' });
    let b = '';
    req.on('data', (c: Buffer) => (b += c));
    req.on('end', () => resolve(b));
    req.on('error', reject);
  });
  t.is(body, 'ok');
  state.answeredAt = Date.now();
  return state;
}

/** A connection that never sends a byte. */
function silent(t: ExecutionContext, port: number) {
  const s = connect(port, '127.0.0.1');
  t.teardown(() => s.destroy());
  const state = { closedAt: 0, openedAt: Date.now() };
  s.on('error', () => {});
  s.on('close', () => (state.closedAt = Date.now()));
  return state;
}

test('proxyIdleTimeout closes idle HTTP/1.1, h2c and silent clients after it; the default keeps them', async (t) => {
  const h1 = await backend(t, 'web');
  const h2 = await h2Backend(t);
  const short = await agentProxy(t, { proxyIdleTimeout: '200ms' }, h1.port, h2);
  const long = await agentProxy(t, {}, h1.port, h2);
  t.is(short.agent.proxy.idleTimeoutMs, 200);
  t.is(long.agent.proxy.idleTimeoutMs, 300_000);

  const [a, b, c] = await Promise.all([idleHttp1(t, short.web), idleH2(t, short.api), silent(t, short.web)]);
  const [x, y, z] = await Promise.all([idleHttp1(t, long.web), idleH2(t, long.api), silent(t, long.web)]);

  // Generous bounds: each is closed once it has idled (not before half the timeout), and well within seconds.
  t.true(await until(() => a.closedAt > 0 && b.closedAt > 0 && c.closedAt > 0, 5000), 'the short timeout closed all three');
  t.true(a.closedAt - a.answeredAt >= 100, `HTTP/1.1 closed ${a.closedAt - a.answeredAt} ms after its answer`);
  t.true(b.closedAt - b.answeredAt >= 100, `h2c closed ${b.closedAt - b.answeredAt} ms after its answer`);
  t.is(b.goaway, h2constants.NGHTTP2_NO_ERROR, 'h2c was told with a graceful GOAWAY');
  t.true(c.closedAt - c.openedAt >= 100, `the silent client closed ${c.closedAt - c.openedAt} ms after connecting`);

  // The default (minutes) leaves the same connections alone for many times the short one.
  await new Promise((r) => setTimeout(r, 1000));
  t.deepEqual([x.closedAt, y.closedAt, z.closedAt, y.goaway], [0, 0, 0, -1], 'the default timeout kept them open');
});

test('proxyIdleTimeout is a duration more than 0, 300s by default', (t) => {
  // mode off: ebpf (the default) also needs attachCgroup.
  t.is(parseAgentConfig({ node: 'n1', mode: 'off' }).proxyIdleTimeout, '300s');
  t.is(parseAgentConfig({ node: 'n1', mode: 'off', proxyIdleTimeout: '2m' }).proxyIdleTimeout, '2m');
  t.throws(() => parseAgentConfig({ node: 'n1', proxyIdleTimeout: '0s' }), { message: /proxyIdleTimeout: must be more than 0/ });
  t.throws(() => parseAgentConfig({ node: 'n1', proxyIdleTimeout: 300 }), { message: /proxyIdleTimeout/ });
  t.throws(() => parseAgentConfig({ node: 'n1', proxyIdleTimeout: '900h' }), { message: /proxyIdleTimeout: must be at most 596h/ });
});
