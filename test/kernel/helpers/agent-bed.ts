// SPDX-License-Identifier: Apache-2.0
/** What the agent tests share: the reviews service in the mesh, and an agent configuration on a scratch area. */
import type { ExecutionContext } from 'ava';
import { join } from 'node:path';
import { type AgentConfig, type AgentConfigInput, parseAgentConfig } from '../../../src/agent/config.ts';
import type { MeshStore } from '../../../src/config/store.ts';
import type { Scratch } from '../../../src/datapath/index.ts';
import { backend, endpoints, service } from '../../proxy/helpers/fixtures.ts';
import type { RedisServer } from '../../redis/helpers/redis-server.ts';
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
