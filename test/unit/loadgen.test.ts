// SPDX-License-Identifier: Apache-2.0
// The bench's constant-rate generator (native/loadgen/constant-rate.c, built
// by the bootstrap) against a loopback server this test runs: it keeps the
// schedule, measures latency from each request's intended send time (so a
// stall counts against every request due during it), and refuses bad input.
import { execFile } from 'node:child_process';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import test from 'ava';
import { LOADGEN_PATH, latencyFigures } from '../../src/bench/workloads/latency.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function loadgen(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(LOADGEN_PATH, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
  });
}

/** Listens on a free loopback port; resolves to the port. */
async function listening(s: Server): Promise<number> {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.address() as AddressInfo).port;
}

/** Answers every request with a fixed 200; `delayOf(n)` holds the n-th answer (1-based, over all connections). */
async function server(delayOf: (n: number) => number = () => 0): Promise<{ port: number; server: Server; answered: () => number }> {
  let n = 0;
  const s = createServer((sock: Socket) => {
    let pending = '';
    sock.on('data', (d) => {
      pending += d.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4);
        const answer = () => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        const wait = delayOf(++n);
        if (wait) setTimeout(answer, wait);
        else answer();
      }
    });
    sock.on('error', () => {});
  });
  return { port: await listening(s), server: s, answered: () => n };
}

test('sends every request of the schedule and reports one latency and one send delay per request', async (t) => {
  const srv = await server();
  t.teardown(() => srv.server.close());
  const run = await loadgen(['--host', '127.0.0.1', '--port', String(srv.port), '--rate', '400', '--seconds', '1', '--connections', '4']);
  t.is(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout);
  t.is(out.requests, 400);
  t.is(out.errors, 0);
  t.is(out.latency_us.length, 400);
  t.is(out.late_us.length, 400);
  t.is(srv.answered(), 400);
  const { metrics, curve } = latencyFigures(out, 1);
  t.true(metrics.p50_ms > 0 && metrics.p50_ms <= metrics.p99_ms && metrics.p99_ms <= metrics.max_ms);
  t.is(metrics.achieved_rps, 400);
  t.deepEqual(curve.map(([p]) => p), [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100]);
});

test('a stall counts against every request that was due during it (coordinated omission corrected)', async (t) => {
  // One connection at 500/s: the 100th answer is held 200 ms, so about 100
  // requests fall due while the connection is busy. Measured from when they
  // could be sent, only one would be slow; from when they were due, all are.
  const srv = await server((n) => (n === 100 ? 200 : 0));
  t.teardown(() => srv.server.close());
  const run = await loadgen(['--host', '127.0.0.1', '--port', String(srv.port), '--rate', '500', '--seconds', '1', '--connections', '1']);
  t.is(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout) as { requests: number; latency_us: number[]; late_us: number[] };
  t.is(out.requests, 500);
  const slow = out.latency_us.filter((us) => us >= 50_000).length;
  t.true(slow >= 50, `${slow} requests at 50 ms or more`);
  t.true(out.late_us.filter((us) => us >= 50_000).length >= 50, 'and they were sent late');
});

test('--warmup sends on the same connections and schedule first and records none of it', async (t) => {
  // 400/s, 0.5 s of warm-up then 0.5 s measured, on 2 connections: the first
  // answer on each is held 100 ms, so about 40 requests fall due while both
  // are busy. They are all in the warm-up (its first 200 requests) and the
  // schedule has caught up long before it ends, so nothing measured is slow;
  // without --warmup they would be measured.
  const srv = await server((n) => (n <= 2 ? 100 : 0));
  t.teardown(() => srv.server.close());
  const connections: unknown[] = [];
  srv.server.on('connection', (c) => connections.push(c));
  const run = await loadgen(['--host', '127.0.0.1', '--port', String(srv.port), '--rate', '400', '--seconds', '0.5', '--warmup', '0.5', '--connections', '2']);
  t.is(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout) as { requests: number; warmup_requests: number; errors: number; latency_us: number[]; late_us: number[] };
  t.is(srv.answered(), 400, 'the server answered warm-up and measured requests');
  t.is(connections.length, 2, 'one set of connections for both');
  t.is(out.requests, 200);
  t.is(out.warmup_requests, 200);
  t.is(out.errors, 0);
  t.is(out.latency_us.length, 200);
  t.is(out.late_us.length, 200);
  const slowest = Math.max(...out.latency_us);
  t.true(slowest < 50_000, `slowest measured request ${slowest} µs: the held warm-up answers must not be in it`);
  const bad = await loadgen(['--host', '127.0.0.1', '--warmup', '-1']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--warmup must be a number of seconds, 0 or more, got '-1'/);
});

test('bad arguments exit 2 with what to fix; a refused connection exits 1 with the problem', async (t) => {
  const bad = await loadgen(['--host', '127.0.0.1', '--rate', 'fast']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--rate must be a positive number, got 'fast'/);
  const named = await loadgen(['--host', 'localhost']);
  t.is(named.code, 2);
  t.regex(named.stderr, /give a numeric address/);
  const srv = await server();
  const port = srv.port;
  await new Promise((resolve) => srv.server.close(resolve));
  const refused = await loadgen(['--host', '127.0.0.1', '--port', String(port), '--rate', '100', '--seconds', '1']);
  t.is(refused.code, 1);
  t.regex(JSON.parse(refused.stdout).problem, /connect to 127\.0\.0\.1 port \d+: Connection refused/);
});

test('a server that closes the connection mid-run fails the run instead of hanging', async (t) => {
  const s = createServer((sock) => sock.once('data', () => sock.destroy()));
  const port = await listening(s);
  t.teardown(() => s.close());
  const run = await loadgen(['--host', '127.0.0.1', '--port', String(port), '--rate', '100', '--seconds', '1', '--connections', '2']);
  t.is(run.code, 1);
  t.regex(JSON.parse(run.stdout).problem, /every connection was closed|too many errors/);
});

test('a server that answers once and then closes each connection fails the run with what happened', async (t) => {
  // The answered requests count; the connections are gone, so the run stops
  // at once instead of waiting out its schedule.
  const s = createServer((sock) => {
    sock.once('data', () => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    sock.on('error', () => {});
  });
  const port = await listening(s);
  t.teardown(() => s.close());
  const run = await loadgen(['--host', '127.0.0.1', '--port', String(port), '--rate', '200', '--seconds', '1', '--connections', '4']);
  t.is(run.code, 1, `exit ${run.code}: ${run.stderr}`);
  t.regex(JSON.parse(run.stdout).problem, /every connection was closed|too many errors/);
});
