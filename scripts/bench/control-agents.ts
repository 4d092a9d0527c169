// SPDX-License-Identifier: Apache-2.0
/**
 * A worker of the control-plane benchmark: runs many simulated agents (real
 * AgentSync instances, lazy, each using a few services) and tells the parent,
 * per mesh version, when the last of its agents applied it.
 *
 * argv[2]: {"url", "first", "count", "services", "warm", "mesh"}
 */
import { performance } from 'node:perf_hooks';
import { AgentSync } from '../../src/config/sync.ts';

const args = JSON.parse(process.argv[2]!) as { url: string; first: number; count: number; services: number; warm: number; mesh: string };
const now = () => performance.timeOrigin + performance.now();
const agents: AgentSync[] = [];
/** version -> how many of this worker's agents have applied it (or later). */
const reached = new Map<number, number>();
let minApplied = 0;

function onApplied(): void {
  // The slowest agent decides when a version has reached "every agent" of this worker.
  let min = Infinity;
  for (const a of agents) if (a.appliedVersion < min) min = a.appliedVersion;
  if (min > minApplied) {
    const at = now();
    for (let v = minApplied + 1; v <= min; v++) reached.set(v, at);
    process.send!({ type: 'reached', from: minApplied + 1, to: min, at });
    minApplied = min;
  }
}

for (let i = 0; i < args.count; i++) {
  const a = new AgentSync({ node: `sim-${args.first + i}`, mode: 'sim', redis: { url: args.url, mesh: args.mesh }, lazy: true, reportIntervalMs: 5000, blockMs: 5000 });
  agents.push(a);
}
await Promise.all(agents.map((a) => a.start()));
// Each agent uses a few services, as a node's workloads would.
await Promise.all(agents.map((a, i) => Promise.all(Array.from({ length: args.warm }, (_, j) => a.want('Service', `bench/svc-${(args.first + i) * 7 + j * 13 % args.services}`)))));
minApplied = Math.min(...agents.map((a) => a.appliedVersion));
for (const a of agents) a.on('applied', onApplied);
process.send!({ type: 'ready', version: minApplied, rss: process.memoryUsage().rss });

process.on('message', async (m: { type: string }) => {
  if (m.type === 'stop') {
    await Promise.all(agents.map((a) => a.stop()));
    process.send!({ type: 'stopped', skipped: agents.reduce((n, a) => n + a.counters.entriesSkipped, 0), resyncs: agents.reduce((n, a) => n + a.counters.resyncGap + a.counters.resyncBackwards, 0) });
    process.disconnect();
  }
});
