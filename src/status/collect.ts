// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh status`: one view of the mesh from what lives in Redis: the
 * control plane, every agent's report (datapath, proxy, workloads, traffic),
 * and a list of problems with what to do about each.
 */
import type { ExpectedPod } from './kube.ts';
import { type CaptureSettings, DEFAULT_CAPTURE, captureSettings } from '../kube/pods.ts';
import { type AgentStatus, readAgentReports } from '../config/agents.ts';
import { configProblems } from './config-checks.ts';
import type { RedisConfig } from '../config/redis.ts';
import { describeRedis } from '../config/redis.ts';
import type { MeshStore } from '../config/store.ts';

export type Level = 'ok' | 'warn' | 'error';

export interface Problem {
  level: Level;
  text: string;
  fix?: string;
}

interface Traffic {
  service: string;
  requests: number;
  errors: number;
  rps: number;
  successRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface StatusReport {
  controlPlane: { redis: { reachable: boolean; target: string; error?: string }; meshVersion: number | null; controller: { leader: string | null } };
  agents: Array<
    Pick<AgentStatus, 'node' | 'mode' | 'health' | 'datapathState' | 'appliedVersion' | 'meshVersion' | 'heartbeatAgeMs' | 'uptimeMs' | 'lastError'> & {
      proxy: Record<string, unknown>;
      datapath: Record<string, unknown>;
      /** Whether the agent takes its pods from Kubernetes (how to restart it differs); null from an agent too old to say. */
      kubernetes: boolean | null;
    }
  >;
  workloads: Array<{ node: string; namespace: string; name: string; captured: boolean; reason?: string }>;
  namespaces: Array<{ namespace: string; captured: number; total: number }>;
  traffic: Traffic[];
  problems: Problem[];
  ok: boolean;
}

/** What the Kubernetes API says should be captured (status against a cluster). */
/** capture: the mesh's namespace label and default inbound ports (from MeshSettings), for choosing pods as the agents do. */
export type KubeSource = (capture: CaptureSettings) => Promise<{ namespaces: string[]; pods: ExpectedPod[] }>;

export async function collectStatus(cfg: RedisConfig, withStore: (fn: (store: MeshStore) => Promise<void>) => Promise<void>, kube?: KubeSource): Promise<StatusReport> {
  const report: StatusReport = {
    controlPlane: { redis: { reachable: false, target: describeRedis(cfg) }, meshVersion: null, controller: { leader: null } },
    agents: [],
    workloads: [],
    namespaces: [],
    traffic: [],
    problems: [],
    ok: false,
  };
  let capture = DEFAULT_CAPTURE;
  const unreadableNodes = new Set<string>();
  let config: Problem[] = [];
  try {
    await withStore(async (store) => {
      report.controlPlane.redis.reachable = true;
      report.controlPlane.meshVersion = await store.version();
      report.controlPlane.controller.leader = await store.redis.get(store.keys.controllerLeader);
      capture = captureSettings((await store.get('MeshSettings', 'mesh'))?.object.spec as Parameters<typeof captureSettings>[0]);
      const { agents, unreadable } = await readAgentReports(store.redis, store.keys);
      for (const u of unreadable) {
        unreadableNodes.add(u.node);
        report.problems.push({ level: 'error', text: `agent ${u.node}: its report is unreadable (${u.error})`, fix: `check the agent on ${u.node} (kubectl -n kernmesh-system logs, or its process); its next report replaces this one` });
      }
      for (const a of agents) {
        const r = a.report as { kubernetes?: unknown; proxy?: Record<string, unknown>; datapath?: Record<string, unknown>; workloads?: Array<{ name: string; namespace: string; ok?: boolean; reason?: string }>; traffic?: Traffic[] };
        report.agents.push({
          node: a.node,
          mode: a.mode,
          health: a.health,
          datapathState: a.datapathState,
          appliedVersion: a.appliedVersion,
          meshVersion: a.meshVersion,
          heartbeatAgeMs: a.heartbeatAgeMs,
          uptimeMs: a.uptimeMs,
          lastError: a.lastError,
          proxy: r.proxy ?? {},
          datapath: r.datapath ?? {},
          kubernetes: typeof r.kubernetes === 'boolean' ? r.kubernetes : null,
        });
        // A pod is captured only while its agent is connected and its node's datapath intercepts.
        const notCapturing = a.health === 'NOT CONNECTED' ? 'its agent is not connected' : a.datapathState === 'drained' ? 'its node was drained: connections are no longer intercepted' : undefined;
        for (const w of r.workloads ?? []) report.workloads.push({ node: a.node, namespace: w.namespace, name: w.name, captured: w.ok !== false && !notCapturing, ...(w.reason ? { reason: w.reason } : notCapturing ? { reason: notCapturing } : {}) });
        if (a.health !== 'NOT CONNECTED') for (const t of r.traffic ?? []) mergeTraffic(report.traffic, t);
      }
      // What the objects themselves say: a Service that is not there, a subset nobody defines.
      config = configProblems([...(await store.snapshot()).objects.values()].map((s) => s.object));
    });
  } catch (err) {
    if (report.controlPlane.redis.reachable) report.problems.push({ level: 'error', text: `reading the mesh state failed: ${(err as Error).message}` });
    else report.controlPlane.redis.error = (err as Error).message;
  }
  const ns = new Map<string, { captured: number; total: number }>();
  if (kube) {
    try {
      const expected = await kube(capture);
      for (const n of expected.namespaces) ns.set(n, { captured: 0, total: 0 });
      const reported = new Set(report.workloads.map((w) => `${w.namespace}/${w.name}`));
      const nodes = new Set(report.agents.map((a) => a.node));
      for (const p of expected.pods) {
        if (reported.has(`${p.namespace}/${p.name}`)) continue;
        report.workloads.push({ node: p.node, namespace: p.namespace, name: p.name, captured: false, reason: missingReason(p.node, nodes, unreadableNodes) });
      }
    } catch (err) {
      report.problems.push({ level: 'warn', text: `could not read the Kubernetes API: ${(err as Error).message}`, fix: 'check --kubeconfig / KUBECONFIG, or leave them out to see the agents\' reports only' });
    }
  }
  for (const w of report.workloads) {
    const n = ns.get(w.namespace) ?? { captured: 0, total: 0 };
    n.total++;
    if (w.captured) n.captured++;
    ns.set(w.namespace, n);
  }
  report.namespaces = [...ns].map(([namespace, n]) => ({ namespace, ...n })).sort((a, b) => a.namespace.localeCompare(b.namespace));
  report.traffic.sort((a, b) => a.service.localeCompare(b.service));
  // Problems met while collecting come first; "healthy" only when there is nothing else.
  const found = problemsOf(report, unreadableNodes.size, config);
  report.problems = report.problems.length ? [...report.problems, ...found.filter((p) => p.level !== 'ok')] : found;
  report.ok = !report.problems.some((p) => p.level === 'error');
  return report;
}

/** What an agent's datapath state means for its node's pods, and what to do about it. */
function datapathProblems(a: StatusReport['agents'][number], pods: number): Problem[] {
  const n = `${pods} pod${pods === 1 ? '' : 's'}`;
  switch (a.datapathState) {
    case 'drained': {
      const since = typeof a.datapath.drainedAt === 'number' ? ` ${Math.max(0, Math.round((Date.now() - a.datapath.drainedAt) / 1000))} s ago` : '';
      return [
        {
          level: 'error',
          text: `agent ${a.node} was drained${since}: its datapath is detached and ${pods ? `the connections of its ${n}` : 'connections on the node'} are not intercepted (no routing, policy or telemetry)`,
          fix: restartHint(a),
        },
      ];
    }
    case 'starting':
      return [
        {
          level: 'warn',
          text: `agent ${a.node} has attached its datapath but not yet declared its proxy alive: connects ${pods ? `of its ${n} ` : ''}fail ${String(a.datapath.failMode ?? 'open')} meanwhile`,
          fix: `it intercepts once it has enrolled its workloads${a.kubernetes ? ' (after listing the pods from the Kubernetes API)' : ''}; if it stays so, look at its log`,
        },
      ];
    case 'stopping':
      return [{ level: 'warn', text: `agent ${a.node} is stopping` }];
    default:
      return [];
  }
}

/**
 * Nothing in a running agent attaches again after a drain: only a new agent
 * process does (it attaches and enrols its pods as at any start).
 */
function restartHint(a: { node: string; kubernetes: boolean | null }): string {
  const kube = `kubectl -n kernmesh-system delete pod -l app.kubernetes.io/name=kernmesh-agent --field-selector spec.nodeName=${a.node} (the DaemonSet starts a new one)`;
  const local = `stop its \`kernmesh agent\` process (SIGTERM) and start it again`;
  const how = a.kubernetes === true ? kube : a.kubernetes === false ? local : `on Kubernetes: ${kube}; else ${local}`;
  return `only restarting the agent on ${a.node} undoes a drain: ${how}`;
}

/** Why a pod that should be captured is not in any agent's report. */
function missingReason(node: string, reporting: Set<string>, unreadable: Set<string>): string {
  if (reporting.has(node)) return `the agent on ${node} does not report it (yet)`;
  if (unreadable.has(node)) return `the report of the agent on ${node} is unreadable`;
  return `no agent runs on node ${node}`;
}

function mergeTraffic(into: Traffic[], t: Traffic): void {
  const have = into.find((x) => x.service === t.service);
  if (!have) {
    into.push({ ...t });
    return;
  }
  const requests = have.requests + t.requests;
  have.errors += t.errors;
  have.rps += t.rps;
  have.successRate = requests ? (requests - have.errors) / requests : 1;
  // Per-node quantiles do not add: the worst is shown (null: beyond the last bucket).
  have.p50Ms = have.p50Ms === null || t.p50Ms === null ? null : Math.max(have.p50Ms, t.p50Ms);
  have.p99Ms = have.p99Ms === null || t.p99Ms === null ? null : Math.max(have.p99Ms, t.p99Ms);
  have.requests = requests;
}

/**
 * unreadable: how many agents' reports could not be read (each already a
 * problem); config: what configProblems found in the mesh's objects.
 */
function problemsOf(r: StatusReport, unreadable: number, config: Problem[]): Problem[] {
  const out: Problem[] = [];
  if (!r.controlPlane.redis.reachable) {
    out.push({ level: 'error', text: `Redis at ${r.controlPlane.redis.target} is unreachable: ${r.controlPlane.redis.error ?? ''}`, fix: 'check REDIS_URL (or --redis) and that Redis runs' });
    return out;
  }
  if (r.agents.length === 0 && unreadable === 0) out.push({ level: 'warn', text: 'no agent has reported to this mesh yet', fix: 'start the agents (kubectl apply -k deploy/, or kernmesh agent)' });
  for (const a of r.agents) {
    if (a.health !== 'NOT CONNECTED') out.push(...datapathProblems(a, r.workloads.filter((w) => w.node === a.node).length));
    if (a.health === 'NOT CONNECTED') out.push({ level: 'error', text: `agent ${a.node} is not connected (last heard ${Math.round(a.heartbeatAgeMs / 1000)} s ago)`, fix: `check the agent on ${a.node} (kubectl -n kernmesh-system logs, or its process)` });
    else if (a.health === 'STALE') out.push({ level: 'warn', text: `agent ${a.node} is at version ${a.appliedVersion} of ${a.meshVersion}`, fix: 'it catches up by itself; if it stays behind, look at its lastError' });
    const c = (a.datapath.counters ?? {}) as Record<string, number>;
    if ((c.fail_open ?? 0) > 0) out.push({ level: 'warn', text: `agent ${a.node}: ${c.fail_open} connects bypassed the proxy while it was down (fail-open)` });
    if ((c.fail_closed ?? 0) > 0) out.push({ level: 'warn', text: `agent ${a.node}: ${c.fail_closed} connects were refused while the proxy was down (fail-closed)` });
    if (a.datapath.error) out.push({ level: 'error', text: `agent ${a.node}: datapath: ${String(a.datapath.error)}` });
    for (const [map, m] of Object.entries((a.datapath.maps ?? {}) as Record<string, { entries: number; capacity: number }>)) {
      if (m.entries >= 0.9 * m.capacity) out.push({ level: 'warn', text: `agent ${a.node}: ${map} is ${m.entries}/${m.capacity} full`, fix: 'raise the datapath capacities' });
    }
  }
  // Every agent builds the same table, so a clash is listed once, not once per node.
  const clashes = new Set<string>();
  for (const a of r.agents) {
    for (const c of (a.proxy.conflicts ?? []) as Array<{ claim: string; kept: string; ignored: string }>) {
      const text = `Services ${c.kept} and ${c.ignored} both claim ${c.claim}: it is routed to ${c.kept} (first by namespace/name) and ${c.ignored} is not reached there`;
      if (clashes.has(text)) continue;
      clashes.add(text);
      out.push({ level: 'warn', text, fix: 'give one of them another address, port or host (kernmesh apply, or the Kubernetes Service it comes from), or delete the one not wanted (kernmesh delete service NAMESPACE/NAME)' });
    }
  }
  out.push(...config);
  const drained = new Set(r.agents.filter((a) => a.health !== 'NOT CONNECTED' && a.datapathState === 'drained').map((a) => a.node));
  for (const w of r.workloads) {
    // A drained node's pods are its agent's one problem (above), with the fix that brings them back.
    if (!w.captured && !drained.has(w.node)) out.push({ level: 'error', text: `${w.namespace}/${w.name} on ${w.node} should be captured but is not: ${w.reason ?? 'unknown'}`, fix: 'check the pod still exists; the agent retries on its next sync' });
  }
  if (out.length === 0) out.push({ level: 'ok', text: 'the mesh is healthy' });
  return out;
}
