// SPDX-License-Identifier: Apache-2.0
// `kernmesh demo traffic` without the demo: its load generator against Node servers on
// loopback port 0, its quantiles, and what it prints.
import test from 'ava';
import { execFile } from 'node:child_process';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LatencyHistogram } from '../../src/demo/latency.ts';
import { type LoadConfig, type RowCounts, liveFrame, renderTraffic, toLines } from '../../src/demo/traffic.ts';

const loadMain = new URL('../../src/demo/load-main.ts', import.meta.url).pathname;

test('histogram quantiles are within 1 % of the exact ones, over any mix of samples', (t) => {
  const samples: number[] = [];
  let x = 12345;
  const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 20_000; i++) samples.push(i % 3 === 0 ? 40 + rnd() * 20 : 0.2 + rnd() * 2);
  const h = new LatencyHistogram();
  for (const s of samples) h.record(s);
  const sorted = [...samples].sort((a, b) => a - b);
  for (const p of [0.01, 0.5, 0.9, 0.99, 1]) {
    const exact = sorted[Math.ceil(p * sorted.length) - 1]!;
    t.true(Math.abs(h.quantile(p) - exact) <= exact * 0.01, `p${p * 100}: ${h.quantile(p)} against ${exact}`);
  }
  t.is(new LatencyHistogram().quantile(0.5), 0);
  const one = new LatencyHistogram();
  one.record(3.7);
  t.is(one.quantile(0.5), 3.7, 'clamped to what was seen');
});

function serve(handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('the load generator counts answers by status and version, and its totals are quantiles over every sample', async (t) => {
  // A canary (v2 every 10th answer), a rate limit of 5 a second, a deny; in its third second the canary answers slowly.
  let n = 0;
  let first = 0;
  const buckets = new Map<number, number>();
  const server = await serve((req, res) => {
    req.resume();
    const answer = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/canary') {
      first ||= Date.now();
      const version = ++n % 10 === 0 ? 'v2' : 'v1';
      const late = Date.now() - first >= 2000 && Date.now() - first < 3000;
      setTimeout(() => answer(200, { service: 'reviews', version }), late ? 60 : 0);
    } else if (req.url === '/limited') {
      const second = Math.floor(Date.now() / 1000);
      const used = (buckets.get(second) ?? 0) + 1;
      buckets.set(second, used);
      if (used > 5) answer(429, { error: 'rate limited' });
      else answer(200, { service: 'ratings', version: 'v1' });
    } else answer(403, { error: 'denied' });
  });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const cfg: LoadConfig = {
    seconds: 4,
    targets: [
      { row: 'reviews', url: `${base}/canary`, rps: 40, expect: [200] },
      { row: 'ratings', url: `${base}/limited`, rps: 10, expect: [200, 429] },
      { row: 'reviews DELETE', url: `${base}/reviews/1`, method: 'DELETE', rps: 5, expect: [403] },
    ],
  };
  const stdout = await new Promise<string>((resolve, reject) => execFile(process.execPath, [loadMain, JSON.stringify(cfg)], (err, out) => (err ? reject(err) : resolve(out))));
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; rows: RowCounts[] });
  t.is(lines.at(-1)!.kind, 'total');
  t.true(lines.slice(0, -1).every((l) => l.kind === 'second') && lines.length >= 3, stdout);
  const [reviews, ratings, denied] = lines.at(-1)!.rows;

  t.is(reviews!.row, 'reviews');
  t.true(reviews!.requests >= 100, `${reviews!.requests} requests`);
  t.is(reviews!.expected, reviews!.requests);
  t.deepEqual(Object.keys(reviews!.statuses), ['200']);
  t.is(reviews!.versions.v2, Math.floor(reviews!.requests / 10), 'every 10th answer was v2');
  t.is(reviews!.versions.v1! + reviews!.versions.v2!, reviews!.requests);
  // Three quarters of the run answered at once, one second's worth after 60 ms: the run's median is fast,
  // though that second's median (the largest per second) is slow.
  t.true(reviews!.p50 < 30, `p50 ${reviews!.p50}`);
  t.true(reviews!.p99 >= 55, `p99 ${reviews!.p99}`);
  t.true(lines.some((l) => l.kind === 'second' && l.rows[0]!.p50 >= 55), 'a slow second');

  t.true(ratings!.statuses['429']! > 0 && ratings!.statuses['200']! > 0, JSON.stringify(ratings!.statuses));
  t.is(ratings!.expected, ratings!.requests, '429 is the limit at work: expected');
  t.deepEqual(Object.keys(denied!.statuses), ['403']);
  t.is(denied!.expected, denied!.requests);
  t.deepEqual(denied!.versions, {});
});

test('the view: a denied row reads as 403 answered as expected; the canary and the limit show; no screen codes off a terminal', (t) => {
  const lines = toLines(
    [
      { row: 'reviews', requests: 300, expected: 300, statuses: { '200': 300 }, versions: { v1: 270, v2: 30 }, p50: 1.2, p99: 4.5 },
      { row: 'ratings', requests: 200, expected: 200, statuses: { '200': 100, '429': 100 }, versions: { v1: 100 }, p50: 0.9, p99: 2 },
      { row: 'reviews DELETE', requests: 100, expected: 100, statuses: { '403': 100 }, versions: {}, p50: 0.5, p99: 1 },
      { row: 'broken', requests: 10, expected: 4, statuses: { '200': 4, error: 6 }, versions: { v1: 4 }, p50: 0.5, p99: 1 },
    ],
    10,
  );
  t.like(lines[0], { service: 'reviews', rps: 30, expected: 1 });
  t.like(lines[3], { expected: 0.4 });
  const table = renderTraffic(lines).split('\n');
  t.regex(table[0]!, /^SERVICE +RPS +EXPECTED +RESPONSES +VERSIONS +P50 +P99$/);
  t.regex(table[1]!, /^reviews +30\.0 +100\.0% +200 100\.0% +v1 90\.0% {2}v2 10\.0% +1\.2 ms +4\.5 ms$/);
  t.regex(table[2]!, /^ratings +20\.0 +100\.0% +200 50\.0% {2}429 50\.0% +v1 100\.0%/);
  t.regex(table[3]!, /^reviews DELETE +10\.0 +100\.0% +403 100\.0% +- +0\.5 ms/);
  t.regex(table[4]!, /^broken +1\.0 +40\.0% +error 60\.0% {2}200 40\.0%/);

  const piped = liveFrame(lines, 3, false);
  t.false(piped.includes('\x1b'), 'no escape codes into a file or pipe');
  t.true(piped.startsWith('second 3:\nSERVICE'));
  t.true(liveFrame(lines, 3, true).startsWith('\x1b[2J\x1b[H'), 'redrawn in place on a terminal');
});
