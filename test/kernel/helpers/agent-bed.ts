// SPDX-License-Identifier: Apache-2.0
/** What the agent tests share: the reviews service in the mesh, and an agent configuration on a scratch area. */
import type { ExecutionContext } from 'ava';
import { join } from 'node:path';
import { type AgentConfig, type AgentConfigInput, parseAgentConfig } from '../../../src/agent/config.ts';
import type { Agent } from '../../../src/agent/agent.ts';
import { MeshStore } from '../../../src/config/store.ts';
import { Scratch } from '../../../src/datapath/index.ts';
import { backend, endpoints, service } from '../../proxy/helpers/fixtures.ts';
import { RedisServer } from '../../redis/helpers/redis-server.ts';
import { VIP4 } from './bed.ts';

/** reviews.shop at VIP4:80, one endpoint: a backend on loopback that answers JSON naming itself reviews-v1. */
export async function reviewsMesh(t: ExecutionContext, store: MeshStore): Promise<void> {
  const b = await backend(t, 'reviews-v1');
  await store.write([
    { op: 'put', object: service('reviews', 'shop', { addresses: [VIP4], ports: [{ port: 80, targetPort: b.port, protocol: 'http' }] }) },
    { op: 'put', object: endpoints('reviews', 'shop', [{ port: b.port, labels: { app: 'reviews', version: 'v1' } }]) },
  ]);
}

/** An eBPF agent attached to the scratch root, its proxy in the scratch's "agent" cgroup, no admin port unless given. */
export function scratchAgentConfig(scratch: Scratch, redis: RedisServer, extra: Partial<AgentConfigInput>): AgentConfig {
  return parseAgentConfig({
    node: 'node-a',
    mode: 'ebpf',
    redis: { url: redis.url },
    cachePath: join(redis.dir, 'agent-cache.json'),
    pinDir: scratch.pinDir,
    attachCgroup: scratch.cgroupRoot,
    proxyCgroup: scratch.cgroup('agent'),
    adminPort: 0,
    ...extra,
  });
}

export interface AgentScratch {
  redis: RedisServer;
  scratch: Scratch;
  /** The captured pod's cgroup ("app"); the scratch netns is the pod's, with VIP4 on its loopback. */
  app: string;
  store: MeshStore;
  /** The agent under test, stopped (detached) at the end whatever happens; undefined once the test stopped it. */
  use(agent: Agent | undefined): void;
}

/**
 * A real Redis, a scratch pod (netns with VIP4, an "app" cgroup), the reviews
 * mesh, this process in the scratch's "agent" cgroup (the proxy's sockets
 * must be under the attach cgroup); everything is removed afterwards.
 */
export async function withAgentScratch(t: ExecutionContext, purpose: string, fn: (bed: AgentScratch) => Promise<void>): Promise<void> {
  const redis = await new RedisServer().start();
  const scratch = new Scratch(purpose);
  let agent: Agent | undefined;
  try {
    scratch.setup();
    scratch.addVip(VIP4);
    const app = scratch.cgroup('app');
    const store = new MeshStore(redis.client());
    await reviewsMesh(t, store);
    scratch.enter('agent');
    await fn({ redis, scratch, app, store, use: (a) => (agent = a) });
  } finally {
    await agent?.stop({ detach: true });
    t.deepEqual(await scratch.cleanup(), []);
    await redis.stop();
  }
}
