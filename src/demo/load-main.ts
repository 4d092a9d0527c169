// SPDX-License-Identifier: Apache-2.0
/**
 * The demo's traffic, run inside a captured pod: each target's requests at
 * its own steady rate. Every second one JSON line with what each row saw in
 * that second, and at the end one with the whole run (quantiles over every
 * sample, not a mix of per-second ones).
 * argv[2]: LoadConfig (see traffic.ts)
 */
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { LatencyHistogram } from './latency.ts';
import type { LoadConfig, RowCounts } from './traffic.ts';

const cfg = JSON.parse(process.argv[2]!) as LoadConfig;

class Row {
  statuses: Record<string, number> = {};
  versions: Record<string, number> = {};
  expected = 0;
  latency = new LatencyHistogram();

  counts(row: string): RowCounts {
    const r = (ms: number) => Math.round(ms * 100) / 100;
    return { row, requests: this.latency.count, expected: this.expected, statuses: this.statuses, versions: this.versions, p50: r(this.latency.quantile(0.5)), p99: r(this.latency.quantile(0.99)) };
  }
}

const rows = cfg.targets.map(() => ({ second: new Row(), total: new Row() }));

function note(i: number, status: string, expected: boolean, version: string | undefined, ms: number): void {
  for (const r of [rows[i]!.second, rows[i]!.total]) {
    r.statuses[status] = (r.statuses[status] ?? 0) + 1;
    if (version) r.versions[version] = (r.versions[version] ?? 0) + 1;
    if (expected) r.expected++;
    r.latency.record(ms);
  }
}

function once(i: number): void {
  const t = cfg.targets[i]!;
  const start = performance.now();
  let done = false;
  const req = request(t.url, { method: t.method ?? 'GET', agent: false, timeout: 2000 }, (res) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      if (done) return;
      done = true;
      const status = res.statusCode ?? 0;
      // The demo's replicas say who they are: which version answered shows the canary split.
      let version: string | undefined;
      try {
        version = status < 300 ? (JSON.parse(Buffer.concat(chunks).toString()) as { version?: string }).version : undefined;
      } catch {
        /* not a replica's answer */
      }
      note(i, String(status), t.expect.includes(status), version, performance.now() - start);
    });
  });
  req.on('error', () => {
    if (done) return;
    done = true;
    note(i, 'error', false, undefined, performance.now() - start);
  });
  req.on('timeout', () => req.destroy());
  req.end();
}

const senders = cfg.targets.map((t, i) => setInterval(() => once(i), 1000 / t.rps));
const print = (kind: 'second' | 'total') => {
  const line = { kind, rows: rows.map((r, i) => r[kind].counts(cfg.targets[i]!.row)) };
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const reporter = setInterval(() => {
  print('second');
  for (const r of rows) r.second = new Row();
}, 1000);
setTimeout(() => {
  for (const s of senders) clearInterval(s);
  clearInterval(reporter);
  // Requests still under way finish (or time out: 2 s) before the totals.
  setTimeout(() => {
    print('total');
    process.exit(0);
  }, 2100);
}, cfg.seconds * 1000);
