// SPDX-License-Identifier: Apache-2.0
/**
 * Memory under idle connections: opens N keep-alive client connections to
 * the proxy (each having made one request, so each has a session and a
 * pooled upstream connection), and reports the proxy's RSS and heap before,
 * after, and per connection.
 *
 *   npm run bench:proxy-idle [-- --connections 10000]
 *
 * The last line is JSON. Everything runs on loopback on this machine.
 */
import { fork } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { connections: { type: 'string', default: '10000' } } });
const N = Number(values.connections);

// A backend answering every request with a fixed response.
const backend = createServer((s) => {
  s.on('data', () => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
  s.on('error', () => {});
});
await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
const backendPort = (backend.address() as AddressInfo).port;

// The proxy in its own process, so its memory is its own.
const child = fork(new URL('./proxy-idle-server.ts', import.meta.url).pathname, [String(backendPort)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const ask = (what: string) => new Promise<{ port: number; rss: number; heap: number }>((resolve) => (child.once('message', (m) => resolve(m as { port: number; rss: number; heap: number })), child.send(what)));
const ready = await new Promise<{ port: number }>((resolve) => child.once('message', (m) => resolve(m as { port: number })));
const before = await ask('mem');

const sockets: Socket[] = [];
const one = () =>
  new Promise<void>((resolve, reject) => {
    const s = connect(ready.port, '127.0.0.1');
    s.on('error', reject);
    s.once('data', () => resolve());
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    sockets.push(s);
  });
const started = Date.now();
for (let i = 0; i < N; i += 200) await Promise.all(Array.from({ length: Math.min(200, N - i) }, one));
const after = await ask('mem');
const mb = (b: number) => Math.round((b / 1048576) * 10) / 10;
const result = {
  connections: N,
  rss_before_mb: mb(before.rss),
  rss_after_mb: mb(after.rss),
  heap_before_mb: mb(before.heap),
  heap_after_mb: mb(after.heap),
  bytes_per_connection: Math.round((after.rss - before.rss) / N),
  heap_bytes_per_connection: Math.round((after.heap - before.heap) / N),
  open_ms: Date.now() - started,
  note: 'each idle client connection made one request first; the proxy keeps one pooled upstream connection per concurrent request',
};
console.error(`${N} idle connections: RSS ${result.rss_before_mb} -> ${result.rss_after_mb} MB (${result.bytes_per_connection} B each), heap ${result.heap_before_mb} -> ${result.heap_after_mb} MB`);
for (const s of sockets) s.destroy();
child.kill('SIGTERM');
backend.close();
console.log(JSON.stringify(result));
