// SPDX-License-Identifier: Apache-2.0
// The upstream pool's idle sweep: its period follows the shortest idle
// timeout among the connections still pooled, back up as well as down, and it
// stops when nothing is pooled (real loopback connections).
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import type { UpstreamConn } from '../../src/proxy/upstream/conn.ts';
import { UpstreamPool } from '../../src/proxy/upstream/pool.ts';

async function backend(t: { teardown(fn: () => void): void }): Promise<number> {
  const sockets: Socket[] = [];
  const s: Server = createServer((sock) => void sockets.push(sock.on('error', () => {})));
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const sock of sockets) sock.destroy();
    s.close();
  });
  return (s.address() as AddressInfo).port;
}

/** A pool (closed at the test's end) and a backend port to connect it to. */
async function poolOn(t: ExecutionContext): Promise<{ pool: UpstreamPool; port: number }> {
  const port = await backend(t);
  const pool = new UpstreamPool();
  t.teardown(() => pool.close());
  return { pool, port };
}

const connect = (pool: UpstreamPool, port: number) =>
  new Promise<UpstreamConn>((resolve, reject) => pool.connect('127.0.0.1', port, (err, conn) => (err ? reject(err) : resolve(conn!))));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Releases a new connection with a 200 ms idle timeout: swept every 50 ms, still open 120 ms later, closed 300 ms after that. */
async function timedFromRelease(t: ExecutionContext, pool: UpstreamPool, port: number): Promise<void> {
  const conn = await connect(pool, port);
  pool.release(conn, 200);
  t.is(pool.sweepPeriodMs, 50);
  await sleep(120);
  t.false(conn.socket.destroyed, 'not closed before its 200 ms');
  await sleep(300);
  t.true(conn.socket.destroyed, 'closed once idle past its 200 ms');
}

test('the sweep speeds up for a short idle timeout and slows down again once those connections are gone', async (t) => {
  const { pool, port } = await poolOn(t);
  const long = await connect(pool, port);
  const short = await connect(pool, port);
  pool.release(long, 60_000);
  t.is(pool.sweepPeriodMs, 5000);
  pool.release(short, 100);
  t.is(pool.sweepPeriodMs, 25, 'a quarter of 100 ms');
  await sleep(300);
  t.true(short.socket.destroyed, 'the short-lived connection was closed for idleness');
  t.false(long.socket.destroyed);
  t.is(pool.sweepPeriodMs, 5000, 'back to the long timeout\'s period');
  t.deepEqual(pool.sizes(), { [`127.0.0.1:${port}`]: 1 });
});

test('the sweep stops when nothing is pooled, and a later release is timed from its own release', async (t) => {
  const { pool, port } = await poolOn(t);
  const first = await connect(pool, port);
  pool.release(first, 100);
  await sleep(250);
  t.true(first.socket.destroyed);
  t.is(pool.sweepPeriodMs, 0, 'no sweep while the pool is empty');
  // Idle 400 ms after the last sweep: a stale clock would make this one look idle for that long already.
  await sleep(400);
  await timedFromRelease(t, pool, port);
});

test('a short timeout released while the sweep is slow is timed from its release, not from the last slow sweep', async (t) => {
  const { pool, port } = await poolOn(t);
  const long = await connect(pool, port);
  const first = await connect(pool, port);
  pool.release(long, 60_000);
  pool.release(first, 100);
  // The short one goes; the sweep that closes it is the last before the period slows to 5 s.
  await sleep(300);
  t.true(first.socket.destroyed);
  t.is(pool.sweepPeriodMs, 5000);
  await sleep(300);
  // 300 ms after that sweep: its clock, if used as this release's stamp, would make this one look 300 ms idle.
  await timedFromRelease(t, pool, port);
});
