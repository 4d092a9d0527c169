// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh demo up`: a whole mesh on this machine. Pods are network
 * namespaces with cgroups (one captured namespace, one not); service
 * replicas listen on loopback; Redis is a child redis-server on a unix
 * socket; the agent runs in eBPF mode with sample rules (a 90/10 canary,
 * retries, a rate limit, an authorization deny). Everything it makes is
 * written down for `down`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { readAgents } from '../config/agents.ts';
import { MeshStore } from '../config/store.ts';
import { cgroup2Root, ensureBpffs, inCgroup } from '../datapath/index.ts';
import { down } from './down.ts';
import { RATINGS_LIMIT_PER_SECOND, demoRules } from './rules.ts';
import { packageScript } from '../paths.ts';
import { type DemoState, readState, writeState } from './state.ts';
import { freePort } from '../ports.ts';

export const VIPS = { reviews: '10.96.0.20', ratings: '10.96.0.30' };
const PODS = [
  { ns: 'shop', name: 'productpage', captured: true },
  { ns: 'legacy', name: 'client', captured: false },
];


/** Starts cmd detached inside a cgroup (joined before exec), logging to a file. */
function startIn(cgroup: string, cmd: string, args: string[], log: string): ChildProcess {
  const fd = openSync(log, 'a');
  const [sh, argv] = inCgroup(cgroup, null, cmd, args);
  const child = spawn(sh, argv, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  return child;
}

export async function up(dir: string, say: (line: string) => void = () => {}): Promise<DemoState> {
  if (readState(dir)) {
    say('a demo is up already: taking it down first');
    await down(dir);
  }
  mkdirSync(dir, { recursive: true });
  const cg = join(cgroup2Root(), 'kmdemo');
  const state: DemoState = { dir, redisSocket: join(dir, 'redis.sock'), pids: {}, netns: [], cgroupRoot: cg, pinDir: join(ensureBpffs(), 'kernmesh-demo'), adminPort: await freePort(), vips: VIPS };
  writeState(state); // from here on, down() can clean up whatever exists

  // Redis, the mesh's store.
  const redis = spawn('redis-server', ['--port', '0', '--unixsocket', state.redisSocket, '--dir', dir, '--save', '', '--appendonly', 'yes'], { detached: true, stdio: 'ignore' });
  redis.unref();
  state.pids.redis = redis.pid!;
  writeState(state);
  await waitFor(async () => {
    if (!existsSync(state.redisSocket)) return false;
    const c = new Redis({ path: state.redisSocket, lazyConnect: true, retryStrategy: () => null });
    try {
      await c.connect();
      return (await c.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      c.disconnect();
    }
  }, 'redis-server');
  say(`redis        unix://${state.redisSocket}`);

  // The "node": a cgroup tree for the pods, the replicas and the agent.
  for (const d of [cg, join(cg, 'agent'), join(cg, 'backends'), ...PODS.map((p) => join(cg, `${p.ns}-${p.name}`))]) if (!existsSync(d)) mkdirSync(d);
  for (const p of PODS) {
    const ns = `kmdemo-${p.ns}-${p.name}`;
    execFileSync('ip', ['netns', 'add', ns]);
    state.netns.push(ns);
    writeState(state);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    for (const vip of Object.values(VIPS)) execFileSync('ip', ['-n', ns, 'addr', 'add', `${vip}/32`, 'dev', 'lo']);
    say(`pod          ${p.ns}/${p.name} (netns ${ns}, ${p.captured ? 'captured' : 'not captured'})`);
  }

  // Replicas: reviews v1 x2 and v2 x1, ratings x2.
  const replicas: Array<{ service: string; version: string; replica: number; port: number }> = [];
  for (const [service, version, n] of [['reviews', 'v1', 2], ['reviews', 'v2', 1], ['ratings', 'v1', 2]] as const) {
    for (let i = 1; i <= n; i++) replicas.push({ service, version, replica: i, port: await freePort() });
  }
  const self = packageScript('cli/main');
  const backendMain = packageScript('demo/backend-main');
  state.pids.backends = startIn(join(cg, 'backends'), process.execPath, [backendMain, JSON.stringify(replicas)], join(dir, 'backends.log')).pid!;
  writeState(state);

  // Services and endpoints come from the controller, in local-registry mode.
  const registry = {
    services: (['reviews', 'ratings'] as const).map((name) => ({
      name,
      namespace: 'shop',
      addresses: [VIPS[name]],
      ports: [{ port: 80, protocol: 'http' }],
      endpoints: replicas.filter((r) => r.service === name).map((r) => ({ address: '127.0.0.1', port: r.port, labels: { app: name, version: r.version } })),
    })),
  };
  writeFileSync(join(dir, 'registry.yaml'), stringify(registry));
  state.pids.controller = startIn(join(cg, 'agent'), process.execPath, [self, 'controller', '--registry', join(dir, 'registry.yaml'), '--redis', `unix://${state.redisSocket}`, '--id', 'demo-controller'], join(dir, 'controller.log')).pid!;
  writeState(state);

  // The user's rules, as `kernmesh apply` would write them.
  const store = new MeshStore(new Redis({ path: state.redisSocket }));
  try {
    await store.write(demoRules().map((object) => ({ op: 'put' as const, object })));
    await waitFor(async () => (await store.exists({ kind: 'Endpoints', key: 'shop/ratings' })) && (await store.exists({ kind: 'Endpoints', key: 'shop/reviews' })), `the controller (see ${join(dir, 'controller.log')})`, 20_000);
  } finally {
    store.redis.disconnect();
  }
  say(`mesh         2 services from the controller (local registry); canary 90/10 with retries, ratings limited to ${RATINGS_LIMIT_PER_SECOND} requests/s, DELETE denied on reviews`);

  // The agent, in eBPF mode, capturing the shop pod.
  const agentConfig = {
    node: 'demo-node',
    mode: 'ebpf',
    redis: { url: `unix://${state.redisSocket}` },
    cachePath: join(dir, 'agent-cache.json'),
    pinDir: state.pinDir,
    attachCgroup: cg,
    proxyCgroup: join(cg, 'agent'),
    adminPort: state.adminPort,
    workloads: PODS.filter((p) => p.captured).map((p) => ({ name: p.name, namespace: p.ns, netnsPath: `/run/netns/kmdemo-${p.ns}-${p.name}`, cgroupPath: join(cg, `${p.ns}-${p.name}`), labels: { app: p.name } })),
  };
  writeFileSync(join(dir, 'agent.yaml'), stringify(agentConfig));
  state.pids.agent = startIn(join(cg, 'agent'), process.execPath, [self, 'agent', '--config', join(dir, 'agent.yaml')], join(dir, 'agent.log')).pid!;
  writeState(state);
  const check = new Redis({ path: state.redisSocket });
  try {
    await waitFor(async () => (await readAgents(check, store.keys)).some((a) => a.health === 'SYNCED'), `the agent (see ${join(dir, 'agent.log')})`, 30_000);
  } finally {
    check.disconnect();
  }
  say(`agent        eBPF mode, admin on 127.0.0.1:${state.adminPort}, log ${join(dir, 'agent.log')}`);
  return state;
}

async function waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up within ${timeoutMs / 1000} s`);
}
