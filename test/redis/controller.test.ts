// SPDX-License-Identifier: Apache-2.0
// The controller in local-registry mode: one leader writes, edits follow, failover on a dead leader.
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { MeshStore } from '../../src/config/store.ts';
import { LocalController } from '../../src/controller/local.ts';
import { RedisServer } from './helpers/redis-server.ts';

const registry = (eps: string[]) => ({ services: [{ name: 'reviews', namespace: 'shop', addresses: ['10.96.0.20'], ports: [{ port: 80 }], endpoints: eps.map((a) => ({ address: a, port: 9080 })) }] });

async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('one of two replicas leads and writes; edits reach Redis; when the leader goes, the other takes over', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const file = join(mkdtempSync(join(tmpdir(), 'kernmesh-registry-')), 'registry.yaml');
  writeFileSync(file, stringify(registry(['10.244.0.1'])));
  const store = new MeshStore(server.client());
  const a = new LocalController(new MeshStore(server.client()), file, 'replica-a');
  const b = new LocalController(new MeshStore(server.client()), file, 'replica-b');
  t.teardown(async () => {
    await a.stop();
    await b.stop();
  });
  a.start();
  await until(async () => a.leader.leading, 'a to lead');
  b.start();
  await until(async () => !!(await store.get('Endpoints', 'shop/reviews')), 'the first write');
  t.false(b.leader.leading, 'only one leader');
  t.is(await server.client().get(store.keys.controllerLeader), 'replica-a');
  t.is(((await store.get('Endpoints', 'shop/reviews'))!.object.spec as { endpoints: unknown[] }).endpoints.length, 1);

  // An edit of the registry (endpoint churn) reaches the mesh.
  writeFileSync(file, stringify(registry(['10.244.0.1', '10.244.0.2', '10.244.0.3'])));
  await until(async () => ((await store.get('Endpoints', 'shop/reviews'))?.object.spec as { endpoints: unknown[] }).endpoints.length === 3, 'the edit');
  const version = await store.version();
  await a.syncNow();
  t.is(await store.version(), version, 'an unchanged registry writes nothing');

  // The leader goes away: the other replica leads and keeps the mesh in step.
  await a.stop();
  await until(async () => b.leader.leading, 'b to take over');
  writeFileSync(file, stringify({ services: [] }));
  await until(async () => !(await store.get('Service', 'shop/reviews')), 'the deletion by the new leader');
  t.false(await store.exists({ kind: 'Endpoints', key: 'shop/reviews' }));
});
