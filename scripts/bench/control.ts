// SPDX-License-Identifier: Apache-2.0
/**
 * Control-plane benchmark: the time from a write until every one of N agents
 * has applied it, with S services in the mesh, against a real redis-server.
 *
 *   npm run bench:control -- --agents 1000 --services 10000 [--updates 200] [--workers 2] [--gap-ms 10]
 *
 * Updates are closed-loop: each is timed alone (written, then waited for
 * until every agent applied it, then --gap-ms of quiet), so the figures are
 * the latency of one apply, not of a queue of them.
 * The last line is one JSON object: agents, services, updates, p50_ms,
 * p99_ms, max_ms, lost_updates, agent_rss_mb (an eager agent holding the
 * whole mesh) and agent_rss_lazy_mb (a lazy agent holding what it uses).
 * Load generator, Redis and agents share this machine's cores. KM_PROF=1 writes CPU
 * profiles of the agent workers to /tmp/prof.
 */
import { type ChildProcess, execFile, fork } from 'node:child_process';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { MeshObject } from '../../src/config/objects.ts';
import { MeshStore } from '../../src/config/store.ts';
import { BenchRedis } from './redis.ts';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000' },
    services: { type: 'string', default: '10000' },
    updates: { type: 'string', default: '200' },
    workers: { type: 'string', default: String(Math.max(2, cpus().length)) },
    warm: { type: 'string', default: '5' },
    'gap-ms': { type: 'string', default: '10' },
  },
});
const AGENTS = Number(values.agents);
const SERVICES = Number(values.services);
const UPDATES = Number(values.updates);
const WORKERS = Math.min(Number(values.workers), AGENTS);
const WARM = Number(values.warm);
const GAP_MS = Number(values['gap-ms']);
const MESH = 'bench';
const now = () => performance.timeOrigin + performance.now();

function svc(i: number, port = 80): MeshObject {
  return {
    apiVersion: 'kernmesh.io/v1',
    kind: 'Service',
    metadata: { name: `svc-${i}`, namespace: 'bench' },
    spec: { hosts: [`svc-${i}.bench.svc.cluster.local`], addresses: [`10.96.${(i >> 8) & 255}.${i & 255}`], ports: [{ port, protocol: 'http' }] },
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const redis = new BenchRedis();
  await redis.start();
  const client = new Redis({ path: redis.socket });
  const store = new MeshStore(client, { mesh: MESH, streamMaxLen: 100_000 });
  const workers: ChildProcess[] = [];
  try {
    const seedStart = now();
    for (let i = 0; i < SERVICES; i += 500) {
      await store.write(Array.from({ length: Math.min(500, SERVICES - i) }, (_, j) => ({ op: 'put' as const, object: svc(i + j) })));
    }
    console.error(`seeded ${SERVICES} services in ${Math.round(now() - seedStart)} ms`);

    // Per worker: when its slowest agent reached each version.
    const reachedAt = Array.from({ length: WORKERS }, () => new Map<number, number>());
    let waiter: (() => void) | undefined;
    const wake = () => waiter?.();
    const readyAll: Array<Promise<void>> = [];
    const per = Math.ceil(AGENTS / WORKERS);
    for (let w = 0; w < WORKERS; w++) {
      const count = Math.min(per, AGENTS - w * per);
      const child = fork(new URL('./control-agents.ts', import.meta.url).pathname, [JSON.stringify({ url: redis.url, first: w * per, count, services: SERVICES, warm: WARM, mesh: MESH })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.env.KM_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : [] });
      workers.push(child);
      readyAll.push(
        new Promise((resolve, reject) => {
          child.on('message', (m: { type: string; from?: number; to?: number; at?: number }) => {
            if (m.type === 'ready') resolve();
            if (m.type === 'reached') {
              for (let v = m.from!; v <= m.to!; v++) reachedAt[w]!.set(v, m.at!);
              wake();
            }
          });
          child.once('exit', (code) => reject(new Error(`agent worker ${w} exited with ${code}`)));
        }),
      );
    }
    const startAgents = now();
    await Promise.all(readyAll);
    console.error(`${AGENTS} agents in ${WORKERS} processes synced in ${Math.round(now() - startAgents)} ms`);

    // One change at a time, each the one object that changed: written, then
    // timed until the slowest agent of all has applied it, then the next.
    const writtenAt = new Map<number, number>();
    const everyoneHas = (v: number) => reachedAt.every((m) => m.has(v));
    for (let u = 0; u < UPDATES; u++) {
      const t0 = now();
      const [v] = await store.write([{ op: 'put', object: svc((u * 7919) % SERVICES, 1000 + (u % 50000)) }]);
      writtenAt.set(v!, t0);
      // Sleep until a worker reports (no polling: this process shares the cores it measures).
      const timeout = setTimeout(wake, 5000);
      while (!everyoneHas(v!) && now() - t0 < 5000) await new Promise<void>((r) => (waiter = r));
      clearTimeout(timeout);
      await new Promise((r) => setTimeout(r, GAP_MS));
    }
    const latencies: number[] = [];
    let lost = 0;
    for (const [v, t0] of writtenAt) {
      const ats = reachedAt.map((m) => m.get(v));
      if (ats.some((a) => a === undefined)) {
        lost++;
        continue;
      }
      latencies.push(Math.max(...(ats as number[])) - t0);
    }
    latencies.sort((a, b) => a - b);

    const stats = await Promise.all(
      workers.map(
        (child) =>
          new Promise<{ skipped: number; resyncs: number }>((resolve) => {
            child.on('message', (m: { type: string; skipped: number; resyncs: number }) => m.type === 'stopped' && resolve(m));
            child.send({ type: 'stop' });
          }),
      ),
    );

    const rss = async (lazy: boolean) => {
      const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', new URL('./control-agent-rss.ts', import.meta.url).pathname, JSON.stringify({ url: redis.url, mesh: MESH, lazy, warm: 50, services: SERVICES })]);
      return JSON.parse(stdout.trim().split('\n').pop()!) as { rss_mb: number; heap_mb: number; objects: number };
    };
    const eager = await rss(false);
    const lazy = await rss(true);

    const result = {
      agents: AGENTS,
      services: SERVICES,
      updates: UPDATES,
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      max_ms: round(latencies[latencies.length - 1] ?? NaN),
      lost_updates: lost,
      resyncs: stats.reduce((n, s) => n + s.resyncs, 0),
      agent_rss_mb: eager.rss_mb,
      agent_heap_mb: eager.heap_mb,
      agent_objects: eager.objects,
      agent_rss_lazy_mb: lazy.rss_mb,
      agent_heap_lazy_mb: lazy.heap_mb,
      agent_lazy_objects: lazy.objects,
      cpus: cpus().length,
      note: 'time from write until the slowest of all agents applied it; Redis, agents and writer share this machine',
    };
    console.error(`update -> every agent applied: p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, max ${result.max_ms} ms, lost ${lost}`);
    console.error(`agent memory: rss ${eager.rss_mb} MB (heap ${eager.heap_mb} MB) holding all ${eager.objects} objects; lazy: rss ${lazy.rss_mb} MB (heap ${lazy.heap_mb} MB) holding ${lazy.objects}`);
    console.log(JSON.stringify(result));
  } finally {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    client.disconnect();
    await redis.stop();
  }
}

await main();
