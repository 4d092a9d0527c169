// SPDX-License-Identifier: Apache-2.0
/** `kernmesh status [-o table|wide|json|yaml] [--watch]`. */
import type { Command } from 'commander';
import type { DatapathState } from '../config/agents.ts';
import { stringify } from 'yaml';
import { loadKubeConfig } from '../kube/client.ts';
import { type StatusReport, collectStatus } from '../status/collect.ts';
import { expectedPods } from '../status/kube.ts';
import { EXIT } from './exit-codes.ts';
import { addRedisFlags, type RedisFlags, redisConfig, withStore } from './mesh-client.ts';
import { FAIL, OK, WARN } from './output.ts';
import { formatTable } from './tables.ts';

/** What each datapath state means, on the DATAPATH line. */
const STATE_TEXT: Record<DatapathState, string> = {
  intercepting: `${OK} intercepting`,
  starting: `${WARN} starting: attached, the proxy not yet declared alive`,
  drained: `${FAIL} drained: NOT intercepting (programs detached, pins removed) until the agent restarts`,
  off: '(not intercepting)',
  stopping: `${WARN} stopping`,
};

const ms = (v: number | null) => (v !== null && Number.isFinite(v) ? `${v} ms` : '> 1 h');
const ago = (v: number) => (v < 60_000 ? `${Math.round(v / 1000)}s` : `${Math.round(v / 60_000)}m`);

export function renderStatus(r: StatusReport, wide: boolean): string {
  const out: string[] = [];
  const cp = r.controlPlane;
  out.push('CONTROL PLANE');
  out.push(`  redis       ${cp.redis.reachable ? OK : FAIL} ${cp.redis.target}${cp.redis.error ? ` (${cp.redis.error})` : ''}`);
  out.push(`  version     ${cp.meshVersion ?? '-'}`);
  out.push(`  controller  ${cp.controller.leader ?? 'no leader reported'}`);
  out.push('', 'AGENTS');
  out.push(
    formatTable(
      ['NODE', 'MODE', 'STATE', 'DATAPATH', 'VERSION', 'HEARTBEAT', 'UPTIME', 'CONNECTIONS'],
      r.agents.map((a) => [a.node, a.mode, a.health, a.datapathState ?? '-', `${a.appliedVersion}/${a.meshVersion}`, ago(a.heartbeatAgeMs), ago(a.uptimeMs), String(a.proxy.activeConnections ?? '-')]),
    ).replace(/^/gm, '  '),
  );
  out.push('', 'DATAPATH');
  for (const a of r.agents) {
    const d = a.datapath as { mode?: string; attachCgroup?: string; programs?: Record<string, number>; maps?: Record<string, { entries: number; capacity: number }>; counters?: Record<string, number> };
    const c = d.counters ?? {};
    out.push(`  ${a.node}: ${d.mode ?? a.mode}${a.datapathState ? ` ${STATE_TEXT[a.datapathState]}` : ''}${d.attachCgroup ? ` attached to ${d.attachCgroup}` : ''}${d.programs ? ` (${Object.keys(d.programs).length} programs)` : ''}`);
    if (d.maps) out.push(`    maps        ${Object.entries(d.maps).map(([k, m]) => `${k} ${m.entries}/${m.capacity}`).join(', ')}`);
    if (d.counters) out.push(`    redirected  ${(c.connect4_redirected ?? 0) + (c.connect6_redirected ?? 0)} connects, ${c.msg_redirected ?? 0} messages (${c.bytes_redirected ?? 0} B), ${c.msg_miss ?? 0} misses, fail-open ${c.fail_open ?? 0}, fail-closed ${c.fail_closed ?? 0}`);
    if (wide && d.counters) out.push(`    counters    ${Object.entries(c).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  out.push('', 'WORKLOADS');
  out.push(formatTable(['NAMESPACE', 'CAPTURED'], r.namespaces.map((n) => [n.namespace, `${n.captured}/${n.total}`])).replace(/^/gm, '  '));
  for (const w of r.workloads.filter((x) => !x.captured)) out.push(`  ${FAIL} ${w.namespace}/${w.name} on ${w.node}: ${w.reason}`);
  out.push('', 'TRAFFIC');
  out.push(formatTable(['SERVICE', 'RPS', 'SUCCESS', 'P50', 'P99', ...(wide ? ['REQUESTS'] : [])], r.traffic.map((t) => [t.service, String(t.rps), `${(t.successRate * 100).toFixed(1)}%`, ms(t.p50Ms), ms(t.p99Ms), ...(wide ? [String(t.requests)] : [])])).replace(/^/gm, '  '));
  out.push('', 'PROBLEMS');
  for (const p of r.problems) out.push(`  ${p.level === 'ok' ? OK : p.level === 'warn' ? WARN : FAIL} ${p.text}${p.fix ? `\n      → ${p.fix}` : ''}`);
  return out.join('\n');
}

export function registerStatus(program: Command): void {
  addRedisFlags(
    program
      .command('status')
      .description('the mesh at a glance: control plane, agents, datapath, workloads, traffic, problems')
      .option('-o, --output <format>', 'table, wide, json or yaml', 'table')
      .option('-w, --watch', 'refresh every 2 seconds')
      .option('--kubeconfig <file>', 'also ask this cluster which pods should be captured (default with --kubernetes: in-cluster, KUBECONFIG or ~/.kube/config)')
      .option('--kubernetes', 'also ask the Kubernetes API which pods should be captured'),
  ).action(async (opts: RedisFlags & { output: string; watch?: boolean; kubeconfig?: string; kubernetes?: boolean }) => {
    const kc = opts.kubeconfig || opts.kubernetes ? loadKubeConfig(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}) : undefined;
    const once = async () => {
      const r = await collectStatus(redisConfig(opts), (fn) => withStore(opts, fn), kc ? (capture) => expectedPods(kc, capture) : undefined);
      const text = opts.output === 'json' ? JSON.stringify(r, null, 2) : opts.output === 'yaml' ? stringify(r) : renderStatus(r, opts.output === 'wide');
      return { r, text };
    };
    if (!opts.watch) {
      const { r, text } = await once();
      console.log(text);
      if (!r.ok) process.exitCode = EXIT.FAILED;
      return;
    }
    for (;;) {
      const { text } = await once();
      process.stdout.write(`\x1b[2J\x1b[H${text}\n`);
      await new Promise((res) => setTimeout(res, 2000));
    }
  });
}
