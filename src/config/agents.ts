// SPDX-License-Identifier: Apache-2.0
/** Reading the agents' reports: SYNCED, STALE or NOT CONNECTED per node. */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';
import { redisError } from './store.ts';

export type AgentHealth = 'SYNCED' | 'STALE' | 'NOT CONNECTED';

/**
 * Whether the node's connections are intercepted, as the agent reports it
 * (report.datapath.state): intercepting; starting (attached, the proxy not
 * yet declared alive, so captured pods' connects fail open or closed);
 * drained (`kernmesh drain` detached it; only a restarted agent intercepts
 * again); off (mode off); stopping (the agent is shutting down).
 */
export const DATAPATH_STATES = ['intercepting', 'starting', 'drained', 'off', 'stopping'] as const;
export type DatapathState = (typeof DATAPATH_STATES)[number];

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
  /** Whether it intercepts (see DatapathState); null from an agent too old to say, or a report that says something else. */
  datapathState: DatapathState | null;
  /** The agent's whole last report (datapath, proxy, workloads, traffic). */
  report: Record<string, unknown>;
}

/** A node whose report could not be read, and why. */
export interface UnreadableReport {
  node: string;
  error: string;
}

type Report = { mode: string; appliedVersion: number; reportedAt: number; startedAt: number; lastError: string | null; counters: Record<string, number> } & Record<string, unknown>;

/** Every readable agent report (see readAgentReports for the unreadable ones too). */
export async function readAgents(redis: Redis, keys: Keys): Promise<AgentStatus[]> {
  return (await readAgentReports(redis, keys)).agents;
}

/**
 * Every agent's report, each parsed on its own: one agent's unreadable report
 * (truncated, or from a different version) must not hide the others, nor be
 * taken for Redis being unreachable.
 */
export async function readAgentReports(redis: Redis, keys: Keys): Promise<{ agents: AgentStatus[]; unreadable: UnreadableReport[] }> {
  let version: string | null;
  let reports: Record<string, string>;
  let alive: number[];
  const nodes: string[] = [];
  try {
    [version, reports] = await Promise.all([redis.get(keys.version), redis.hgetall(keys.agents)]);
    nodes.push(...Object.keys(reports).sort());
    alive = nodes.length ? await Promise.all(nodes.map((n) => redis.exists(keys.alive(n)))) : [];
  } catch (err) {
    throw redisError(err, 'reading agent reports');
  }
  const meshVersion = Number(version ?? 0);
  const now = Date.now();
  const agents: AgentStatus[] = [];
  const unreadable: UnreadableReport[] = [];
  nodes.forEach((node, i) => {
    const r = parseReport(reports[node]!);
    if (typeof r === 'string') {
      unreadable.push({ node, error: r });
      return;
    }
    const health: AgentHealth = alive[i] !== 1 ? 'NOT CONNECTED' : r.appliedVersion === meshVersion ? 'SYNCED' : 'STALE';
    agents.push({
      node,
      mode: r.mode,
      health,
      appliedVersion: r.appliedVersion,
      meshVersion,
      heartbeatAgeMs: now - r.reportedAt,
      uptimeMs: now - r.startedAt,
      lastError: r.lastError,
      counters: r.counters,
      datapathState: datapathStateOf(r),
      report: r,
    });
  });
  return { agents, unreadable };
}

function datapathStateOf(r: Report): DatapathState | null {
  const state = (r.datapath as { state?: unknown } | undefined)?.state;
  return (DATAPATH_STATES as readonly unknown[]).includes(state) ? (state as DatapathState) : null;
}

/** The report, or why it cannot be used. */
function parseReport(text: string): Report | string {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch (err) {
    return `not valid JSON: ${(err as Error).message}`;
  }
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'not a JSON object';
  return r as Report;
}
