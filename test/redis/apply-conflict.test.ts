// SPDX-License-Identifier: Apache-2.0
// Optimistic concurrency for `kernmesh apply`: a write based on a stale read
// of the mesh is refused whole, and an apply that another writer got in
// ahead of starts over on the new state (or gives up, having written nothing).
// The other writer runs on its own connection to a real redis-server, at a
// chosen point between the apply's reads (a MeshStore subclass calls it).
import test from 'ava';
import type { Redis } from 'ioredis';
import { APPLY_ATTEMPTS, applySources } from '../../src/config/apply.ts';
import type { Kind } from '../../src/config/model/kinds.ts';
import type { MeshObject } from '../../src/config/objects.ts';
import { MeshStore, type StoredObject } from '../../src/config/store.ts';
import { KmError } from '../../src/errors.ts';
import { service } from './helpers/objects.ts';
import { RedisServer } from './helpers/redis-server.ts';

/** Calls `between` after each list() or get() read of the apply, with how many of that read came before. */
class Interleaved extends MeshStore {
  readonly reads = { list: 0, get: 0 };
  private readonly between: (read: 'list' | 'get', n: number) => Promise<void>;

  constructor(redis: Redis, between: (read: 'list' | 'get', n: number) => Promise<void>) {
    super(redis);
    this.between = between;
  }

  override async list(kind?: Kind): Promise<StoredObject[]> {
    const r = await super.list(kind);
    await this.between('list', ++this.reads.list);
    return r;
  }

  override async get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    const r = await super.get(kind, key);
    await this.between('get', ++this.reads.get);
    return r;
  }
}

async function setup(t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ server: RedisServer; other: MeshStore }> {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  return { server, other: new MeshStore(server.client()) };
}

const web = { name: 'web.yaml', text: 'kind: Service\nmetadata: {name: web, namespace: shop}\nspec: {addresses: [10.96.0.10], ports: [{port: 80}]}\n' };
const withVip = (o: MeshObject): MeshObject => ({ ...o, spec: { ...(o.spec as object), addresses: ['10.96.0.10'] } });

test('a write expecting a version the mesh has left writes nothing and says so', async (t) => {
  const { server, other: store } = await setup(t);
  const redis = server.client();
  t.deepEqual(await store.write([{ op: 'put', object: service('web') }]), [1]);

  for (const stale of [0, 2]) {
    const err = await t.throwsAsync(store.write([{ op: 'put', object: service('api') }, { op: 'delete', ref: { kind: 'Service', key: 'shop/web' } }], { expectedVersion: stale }));
    t.true(err instanceof KmError);
    t.is((err as KmError).code, 'KM_ERR_CONFLICT');
    t.regex(err!.message, new RegExp(`at version 1, not ${stale}.*nothing was written`));
  }
  t.is(await store.version(), 1, 'no version taken');
  t.deepEqual(await redis.hkeys(store.keys.objects), ['Service/shop/web'], 'nothing put, nothing deleted');
  t.is(await redis.xlen(store.keys.stream), 1, 'no stream entry');

  // The version it holds lets the batch through; no expected version is the old, unconditional write.
  t.deepEqual(await store.write([{ op: 'put', object: service('api') }], { expectedVersion: 1 }), [2]);
  t.deepEqual(await store.write([{ op: 'delete', ref: { kind: 'Service', key: 'shop/api' } }]), [3]);
});

test('a clashing Service written between the clash check and the write makes the apply start over and refuse', async (t) => {
  const { server, other } = await setup(t);
  // Right after the apply read the Services (none yet), another writer takes 10.96.0.10:80.
  const store = new Interleaved(server.client(), async (read, n) => {
    if (read === 'list' && n === 1) await other.write([{ op: 'put', object: withVip(service('other')) }]);
  });

  const err = await t.throwsAsync(applySources(store, [web]));
  t.is((err as KmError).code, 'KM_ERR_INVALID_CONFIG', err!.message);
  t.regex(err!.message, /Service\/shop\/web claims address 10\.96\.0\.10:80, which Service\/shop\/other \(in the mesh\) already has/);
  t.is(store.reads.list, 2, 'checked again on the new state');
  t.is(await store.version(), 1, 'only the other writer wrote');
  t.truthy(await store.get('Service', 'shop/other'));
  t.is(await other.get('Service', 'shop/web'), undefined, 'web was not written beside it');
});

test('an object changed by another writer after the apply compared it is not reported unchanged', async (t) => {
  const { server, other } = await setup(t);
  await applySources(other, [web]);
  const stored = (await other.get('Service', 'shop/web'))!.object;
  // Right after the apply read web (equal to what it applies), another writer moves it to port 8080.
  let moved = false;
  const between = async (read: 'list' | 'get') => {
    if (read !== 'get' || moved) return;
    moved = true;
    await other.write([{ op: 'put', object: { ...stored, spec: { ...(stored.spec as object), ports: [{ port: 8080, protocol: 'http' }] } } }]);
  };

  // A dry run, which writes nothing, still shows the change against the mesh as it is now.
  const dry = await applySources(new Interleaved(server.client(), between), [web], { dryRun: true });
  t.is(dry[0]!.action, 'configured');
  t.regex(dry[0]!.diff!, /-\s+- port: 8080\n[\s\S]*\+\s+- port: 80\n/);
  t.is(await other.version(), 2, 'the dry run wrote nothing');

  moved = false;
  const store = new Interleaved(server.client(), between);
  const [r] = await applySources(store, [web]);
  t.is(store.reads.get, 2, 'compared again on the new state');
  t.deepEqual({ action: r!.action, version: r!.version }, { action: 'configured', version: 4 });
  t.deepEqual(((await other.get('Service', 'shop/web'))!.object.spec as { ports: unknown[] }).ports, [{ port: 80 }]);
});

test('an apply the mesh keeps changing under gives up after a few rounds, having written nothing', async (t) => {
  const { server, other } = await setup(t);
  // Every time the apply reads web, another writer adds an unrelated Service.
  const store = new Interleaved(server.client(), async (read, n) => {
    if (read === 'get') await other.write([{ op: 'put', object: service(`noise-${n}`) }]);
  });

  const err = await t.throwsAsync(applySources(store, [web]));
  t.is((err as KmError).code, 'KM_ERR_CONFLICT');
  t.is(err!.message, `the mesh changed ${APPLY_ATTEMPTS} times while applying (other writers got in between its checks and its write); nothing was written; try again`);
  t.is(store.reads.get, APPLY_ATTEMPTS);
  t.is(await other.version(), APPLY_ATTEMPTS, 'only the other writer wrote');
  t.is(await other.get('Service', 'shop/web'), undefined);
  const entries = await server.client().xrange(other.keys.stream, '-', '+');
  t.is(entries.length, APPLY_ATTEMPTS);
  t.false(entries.some(([, f]) => f.includes('shop/web')), 'no stream entry for web');
});
