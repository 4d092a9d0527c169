// SPDX-License-Identifier: Apache-2.0
// Opaque TCP through the proxy: half-close, byte counts, server-first protocols, TLS passed through.
import test from 'ava';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { endpoints, proxy, rawUpstream, service } from './helpers/fixtures.ts';
import { sniOf } from '../../src/proxy/tls.ts';

test('a declared TCP port is piped both ways with half-close, and counted', async (t) => {
  // The backend reads everything, then (after the client's FIN) answers with its size.
  const port = await rawUpstream(
    t,
    (s) => {
      let n = 0;
      s.on('data', (c) => (n += c.length));
      s.on('end', () => s.end(`got ${n} bytes`));
    },
    { allowHalfOpen: true },
  );
  const p = await proxy(t, [service('db', 'shop', { ports: [{ port: 5432, targetPort: port, protocol: 'tcp' }] }), endpoints('db', 'shop', [{ port }])], 'shop/db');
  const answer = await new Promise<string>((resolve) => {
    const c = connect(p.port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => (got += d));
    c.on('end', () => resolve(got));
    c.end(Buffer.alloc(100_000, 7)); // write, then half-close: the reply must still arrive
  });
  t.is(answer, 'got 100000 bytes');
  // The proxy counts a connection when both of its sockets have closed, just after the client sees the end.
  let metrics = '';
  for (let i = 0; i < 100 && !/istio_tcp_connections_closed_total\{/.test(metrics); i++) {
    await new Promise((r) => setTimeout(r, 10));
    metrics = await p.server.core.metrics.render();
  }
  t.regex(metrics, /istio_tcp_received_bytes_total\{[^}]*destination_service="db\.shop\.svc\.cluster\.local"[^}]*\} 100000/);
  t.regex(metrics, /istio_tcp_sent_bytes_total\{[^}]*\} 16/);
  t.regex(metrics, /istio_tcp_connections_opened_total\{[^}]*\} 1/);
  t.regex(metrics, /istio_tcp_connections_closed_total\{[^}]*\} 1/);
});

test('a server-first protocol is not stalled: after the detection timeout the greeting flows', async (t) => {
  const port = await rawUpstream(
    t,
    (s) => {
      s.write('220 smtp.example ESMTP ready\r\n');
      s.on('data', (d) => s.end(`250 ${d}`));
      s.on('end', () => s.end());
    },
    { allowHalfOpen: true },
  );
  // No declared protocol: detection waits for the client, then gives up and pipes.
  const p = await proxy(t, [service('mail', 'shop', { ports: [{ port: 25, targetPort: port }] }), endpoints('mail', 'shop', [{ port }])], 'shop/mail');
  const started = Date.now();
  const greeting = await new Promise<string>((resolve) => {
    const c = connect(p.port, '127.0.0.1');
    c.once('data', (d) => {
      c.destroy();
      resolve(String(d));
    });
  });
  t.regex(greeting, /^220 smtp\.example/);
  t.true(Date.now() - started < 1000, `greeting after ${Date.now() - started} ms`);
});

test('TLS is passed through untouched, and its SNI is recorded', async (t) => {
  let hello: Buffer | undefined;
  const port = await rawUpstream(t, (s) => s.once('data', (d) => ((hello = d), s.destroy())), { allowHalfOpen: true });
  const p = await proxy(t, [service('secure', 'shop', { ports: [{ port: 443, targetPort: port }] }), endpoints('secure', 'shop', [{ port }])], 'shop/secure');
  await new Promise<void>((resolve) => {
    const c = tlsConnect({ port: p.port, host: '127.0.0.1', servername: 'pay.example.com', rejectUnauthorized: false });
    c.on('error', () => resolve());
    c.on('close', () => resolve());
  });
  t.truthy(hello, 'the ClientHello reached the backend');
  t.is(sniOf(hello!), 'pay.example.com', 'byte for byte: the backend can read the same name');
  t.is(p.server.tlsServerNames.get('pay.example.com'), 1);
});
