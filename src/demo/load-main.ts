// SPDX-License-Identifier: Apache-2.0
/**
 * The demo's traffic, run inside a captured pod: requests to the services'
 * VIPs at a steady rate, and one JSON line per second per service with what
 * it saw (rps, success rate, p50, p99).
 * argv[2]: {"seconds", "rps", "targets": [{"service", "url", "method"}]}
 */
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';

const cfg = JSON.parse(process.argv[2]!) as { seconds: number; rps: number; targets: Array<{ service: string; url: string; method?: string }> };
const window = new Map<string, { ok: number; fail: number; lat: number[] }>();

function once(t: { service: string; url: string; method?: string }): void {
  const start = performance.now();
  const w = window.get(t.service) ?? { ok: 0, fail: 0, lat: [] };
  window.set(t.service, w);
  const req = request(t.url, { method: t.method ?? 'GET', agent: false, timeout: 2000 }, (res) => {
    res.resume();
    res.on('end', () => {
      w.lat.push(performance.now() - start);
      // 403 and 429 are the mesh's policy at work, not failures of the service.
      if ((res.statusCode ?? 0) < 500) w.ok++;
      else w.fail++;
    });
  });
  req.on('error', () => w.fail++);
  req.on('timeout', () => req.destroy());
  req.end();
}

const q = (xs: number[], p: number) => (xs.length ? xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : 0);
let tick = 0;
const every = 1000 / cfg.rps;
const sender = setInterval(() => once(cfg.targets[tick++ % cfg.targets.length]!), every);
const reporter = setInterval(() => {
  for (const [service, w] of window) {
    const n = w.ok + w.fail;
    process.stdout.write(`${JSON.stringify({ service, rps: n, success: n ? w.ok / n : 1, p50: Math.round(q(w.lat, 0.5) * 100) / 100, p99: Math.round(q(w.lat, 0.99) * 100) / 100 })}\n`);
  }
  window.clear();
}, 1000);
setTimeout(() => {
  clearInterval(sender);
  setTimeout(() => {
    clearInterval(reporter);
    process.exit(0);
  }, 1100);
}, cfg.seconds * 1000);
