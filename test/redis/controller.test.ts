// SPDX-License-Identifier: Apache-2.0
// The controller in local-registry mode: one leader writes, edits follow, failover on a dead leader.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { MeshStore } from '../../src/config/store.ts';
import { LocalController, readRegistry } from '../../src/controller/local.ts';
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

/** A leading controller over a fresh Redis and a one-service registry, its objects written. */
async function leading(t: import('ava').ExecutionContext, options?: { resyncMs?: number }) {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const file = join(mkdtempSync(join(tmpdir(), 'kernmesh-registry-')), 'registry.yaml');
  writeFileSync(file, stringify(registry(['10.244.0.1'])));
  const store = new MeshStore(server.client());
  const ctl = new LocalController(new MeshStore(server.client()), file, 'replica-a', options);
  t.teardown(() => ctl.stop());
  ctl.start();
  const written = async () => (await store.list()).length === 2;
  await until(written, 'the first write');
  return { server, file, store, ctl, written };
}

test('Redis flushed under the leader: it takes its key back as a new term and writes the registry again', async (t) => {
  // The periodic pass is left at its default (10 s): the new term alone must bring the objects back.
  const { server, store, written } = await leading(t);
  await server.client().flushall();
  await until(written, 'the objects to be written again');
  t.is(await server.client().get(store.keys.controllerLeader), 'replica-a');
});

test('Redis restarted empty under the leader: the registry is written again', async (t) => {
  const { server, store, written } = await leading(t);
  await server.kill();
  // Without its append-only file the server comes back with nothing, as one without persistence does.
  rmSync(join(server.dir, 'appendonlydir'), { recursive: true, force: true });
  await server.start();
  t.false(await written(), 'the restarted server is empty');
  await until(written, 'the objects to be written again');
  t.is(await server.client().get(store.keys.controllerLeader), 'replica-a');
});

test('a registry-owned object deleted behind the leader\'s back (kernmesh delete) is written again by the next periodic pass', async (t) => {
  const { store, ctl, written } = await leading(t, { resyncMs: 100 });
  await store.write([{ op: 'delete', ref: { kind: 'Endpoints', key: 'shop/reviews' } }]);
  await until(written, 'the Endpoints to be written again');
  t.true(ctl.leader.leading, 'with no change of leader');
});

test('a registry port without a protocol leaves it out (detected per connection), one with a protocol keeps it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'km-reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'registry.yaml');
  writeFileSync(file, stringify({ services: [{ ...registry(['10.244.0.1']).services[0], ports: [{ port: 25 }, { port: 80, protocol: 'http' }] }] }));
  const svc = readRegistry(file).find((o) => o.kind === 'Service')!;
  t.deepEqual((svc.spec as { ports: unknown[] }).ports, [{ port: 25 }, { port: 80, protocol: 'http' }]);
});

test('two registry services on one address and port are refused as apply would, naming both', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'km-reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'registry.yaml');
  const one = registry(['10.244.0.1']).services[0]!;
  writeFileSync(file, stringify({ services: [{ ...one, addresses: ['fd00::10'] }, { ...one, name: 'ratings', addresses: ['FD00:0::10'] }] }));
  t.throws(() => readRegistry(file), { message: (m) => m.includes(file) && /services\.1\.addresses\.0: Service\/shop\/ratings claims address fd00::10:\d+, which Service\/shop\/reviews/.test(m) && m.includes('nothing was written') });
});

test('a registry the mesh schema refuses writes nothing: the error names the file and the entry, and what was written stays', async (t) => {
  const { file, store, ctl } = await leading(t);
  const version = await store.version();
  const bad = (service: Record<string, unknown>) => stringify({ services: [{ ...registry(['10.244.0.1']).services[0], ...service }] });
  const refused = (text: string, path: string) => {
    writeFileSync(file, text);
    t.throws(() => readRegistry(file), { message: (m) => m.includes(file) && m.includes(path) }, path);
  };
  refused(bad({ ports: [{ port: 0 }] }), 'services.0.ports.0.port');
  refused(bad({ addresses: ['not-an-ip'] }), 'services.0.addresses.0');
  refused(bad({ name: 'Bad_Name' }), 'services.0.name');
  refused(bad({ name: 'a.b' }), 'services.0.name');
  refused(bad({ endpoints: [{ address: 'also-not-an-ip' }] }), 'services.0.endpoints.0.address');
  refused(bad({ endpoints: [{ address: '10.0.0.1', weight: 0 }] }), 'services.0.endpoints.0.weight');
  refused(bad({ endpoints: [{ address: '10.0.0.2' }, { address: '10.0.0.1', weight: -4 }] }), 'services.0.endpoints.1.weight');
  // The running controller keeps what it last wrote and says why it did not write.
  await until(async () => ctl.lastError?.includes('services.0.endpoints.1.weight') ?? false, 'the refusal');
  t.is(await store.version(), version, 'nothing written');
  t.is(((await store.get('Endpoints', 'shop/reviews'))!.object.spec as { endpoints: Array<{ address: string }> }).endpoints[0]!.address, '10.244.0.1');
});
