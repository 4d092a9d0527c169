// SPDX-License-Identifier: Apache-2.0
/** Reading the agents' reports: SYNCED, STALE or NOT CONNECTED per node. */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';
import { redisError } from './store.ts';

export type AgentHealth = 'SYNCED' | 'STALE' | 'NOT CONNECTED';

export interface AgentStatus {
  node: string;
  mode: string;
  health: AgentHealth;
  appliedVersion: number;
  meshVersion: number;
  heartbeatAgeMs: number;
  uptimeMs: number;
  lastError: string | null;
  counters: Record<string, number>;
  /** The agent's whole last report (datapath, proxy, workloads, traffic). */
  report: Record<string, unknown>;
}

export async function readAgents(redis: Redis, keys: Keys): Promise<AgentStatus[]> {
  try {
    const [version, reports] = await Promise.all([redis.get(keys.version), redis.hgetall(keys.agents)]);
    const nodes = Object.keys(reports).sort();
    const alive = nodes.length ? await Promise.all(nodes.map((n) => redis.exists(keys.alive(n)))) : [];
    const meshVersion = Number(version ?? 0);
    const now = Date.now();
    return nodes.map((node, i) => {
      const r = JSON.parse(reports[node]!) as { mode: string; appliedVersion: number; reportedAt: number; startedAt: number; lastError: string | null; counters: Record<string, number> } & Record<string, unknown>;
      const health: AgentHealth = alive[i] !== 1 ? 'NOT CONNECTED' : r.appliedVersion === meshVersion ? 'SYNCED' : 'STALE';
      return {
        node,
        mode: r.mode,
        health,
        appliedVersion: r.appliedVersion,
        meshVersion,
        heartbeatAgeMs: now - r.reportedAt,
        uptimeMs: now - r.startedAt,
        lastError: r.lastError,
        counters: r.counters,
        report: r,
      };
    });
  } catch (err) {
    throw redisError(err, 'reading agent reports');
  }
}
