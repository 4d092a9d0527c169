// SPDX-License-Identifier: Apache-2.0
/**
 * A constant-rate HTTP/1.1 load generator that does not omit the waits it
 * causes ("coordinated omission"): request i is due at t0 + i/rate whatever
 * happened before, and its latency is measured from that intended time, not
 * from when it could be sent. A stall therefore shows in every request that
 * should have gone out during it, as it would for real users (wrk2's method).
 *
 *   node constant-rate.ts --host H --port P --rate R --seconds S --connections K
 *
 * K keep-alive connections, at most one request in flight on each; a request
 * that is due while every connection is busy waits for the first one free
 * (and that wait counts). Prints one JSON object: the percentiles, the
 * distribution for the chart, and how late the generator itself sent
 * (its own floor, reported so nobody mistakes it for the proxy's).
 */
import { writeFileSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { CURVE_POINTS, percentile } from '../stats.ts';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string', default: '80' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
    path: { type: 'string', default: '/' },
  },
});
const host = values.host!;
const port = Number(values.port);
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const total = Math.max(1, Math.round(rate * seconds));
const intervalMs = 1000 / rate;
const request = Buffer.from(`GET ${values.path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: kernmesh-bench\r\n\r\n`);

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const latency = new Float64Array(total);
const late = new Float64Array(total);
let t0 = 0;
let sent = 0;
let completed = 0;
let errors = 0;

/** One keep-alive connection and the response it is reading. */
class Conn {
  readonly socket: Socket;
  index = -1;
  private buf: Buffer | null = null;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.index >= 0) fail(this);
    });
  }

  send(index: number, now: number): void {
    this.index = index;
    late[index] = now - (t0 + index * intervalMs);
    this.socket.write(request);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buf.toString('latin1', 0, end);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) return fail(this); // every server in the bench sends Content-Length
    if (this.buf.length < end + 4 + Number(length[1])) return;
    this.buf = null;
    const i = this.index;
    this.index = -1;
    if (!head.startsWith('HTTP/1.1 2')) errors++;
    else latency[completed++] = nowMs() - (t0 + i * intervalMs);
    idle.push(this);
    pump();
  }
}

const idle: Conn[] = [];
let finished = false;

function fail(c: Conn): void {
  errors++;
  c.index = -1;
  c.socket.destroy();
  if (errors > total / 100) finish('too many errors');
}

/** Sends every request that is due, while a connection is free. */
function pump(): void {
  const now = nowMs();
  while (sent < total && idle.length && t0 + sent * intervalMs <= now) idle.pop()!.send(sent++, now);
  if (completed + errors >= total) finish();
}

function finish(problem?: string): void {
  if (finished) return;
  finished = true;
  const lat = latency.subarray(0, completed).sort();
  const lateSorted = late.subarray(0, sent).sort();
  const ms = (x: number) => Math.round(x * 1000) / 1000;
  const out = {
    ...(problem ? { problem } : {}),
    rate,
    seconds,
    connections,
    requests: completed,
    // Errors, and whatever was never sent or never answered.
    errors: total - completed,
    p50_ms: ms(percentile(lat, 50)),
    p90_ms: ms(percentile(lat, 90)),
    p99_ms: ms(percentile(lat, 99)),
    p999_ms: ms(percentile(lat, 99.9)),
    max_ms: ms(percentile(lat, 100)),
    mean_ms: ms(lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length)),
    curve: CURVE_POINTS.map((p) => [p, ms(percentile(lat, p))]),
    send_late_p50_ms: ms(percentile(lateSorted, 50)),
    send_late_p99_ms: ms(percentile(lateSorted, 99)),
  };
  console.log(JSON.stringify(out));
  process.exit(problem ? 1 : 0);
}

async function main(): Promise<void> {
  await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<void>((resolve, reject) => {
          const s = connect({ host, port }, () => {
            s.off('error', reject);
            idle.push(new Conn(s));
            resolve();
          });
          s.once('error', reject);
        }),
    ),
  );
  try {
    // The clock thread inherits this: 1 ns of timer slack instead of 50 µs halves how late it wakes.
    writeFileSync('/proc/self/timerslack_ns', '1');
  } catch {
    /* an older kernel: the default slack, and a later send (reported as send_late) */
  }
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const ticker = new Worker(new URL(`./ticker.${ext}`, import.meta.url), { workerData: { intervalMs, total } });
  ticker.on('error', (err) => finish(`ticker: ${err.message}`));
  await new Promise((resolve) => ticker.once('message', resolve));
  ticker.on('message', pump);
  t0 = nowMs() + 5;
  ticker.postMessage(t0);
  // Whatever is still outstanding well after the schedule ended has timed out.
  setTimeout(() => finish('timed out waiting for responses'), seconds * 1000 + 10_000).unref();
}

main().catch((err: Error) => {
  console.log(JSON.stringify({ problem: err.message }));
  process.exit(1);
});
