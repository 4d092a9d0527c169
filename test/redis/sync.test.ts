// SPDX-License-Identifier: Apache-2.0
// Agents against a real redis-server: convergence, order, restarts, outages, trimming.
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loggerTo } from '../../src/log.ts';
import { MeshStore } from '../../src/config/store.ts';
import { AgentSync } from '../../src/config/sync.ts';
import { readAgents } from '../../src/config/agents.ts';
import { DAMAGED_KEPT, setAside } from '../../src/config/cache.ts';
import { RedisServer } from './helpers/redis-server.ts';
import { service } from './helpers/objects.ts';

interface Ctx {
  server: RedisServer;
  agents: AgentSync[];
  dir: string;
}

async function setup(t: ExecutionContext): Promise<Ctx & { store: MeshStore; cleanup: () => Promise<void> }> {
  const server = await new RedisServer().start();
  const client = server.client();
  const store = new MeshStore(client, { streamMaxLen: 50 });
  const ctx: Ctx = { server, agents: [], dir: mkdtempSync(join(tmpdir(), 'kernmesh-agent-')) };
  const cleanup = async () => {
    await Promise.all(ctx.agents.map((a) => a.stop()));
    client.disconnect();
    await server.stop();
    rmSync(ctx.dir, { recursive: true, force: true });
  };
  t.teardown(cleanup);
  return { ...ctx, store, cleanup };
}

function agent(ctx: Ctx, node: string, extra: Partial<ConstructorParameters<typeof AgentSync>[0]> = {}): AgentSync {
  const a = new AgentSync({ node, redis: { url: ctx.server.url }, blockMs: 200, reportIntervalMs: 100, cachePath: join(ctx.dir, `${node}.json`), persistIntervalMs: 10, ...extra });
  ctx.agents.push(a);
  return a;
}

/** Resolves once the agent has applied version v (no sleeps: driven by its events). */
function until(a: AgentSync, v: number, timeoutMs = 10_000): Promise<void> {
  if (a.appliedVersion >= v) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${a.node} stuck at ${a.appliedVersion}, wanted ${v}`)), timeoutMs);
    const on = () => {
      if (a.appliedVersion >= v) {
        clearTimeout(timer);
        a.off('applied', on);
        resolve();
      }
    };
    a.on('applied', on);
  });
}

const viewKeys = (a: AgentSync) => [...a.current().objects.keys()].sort();
const redisKeys = async (s: MeshStore) => [...(await s.snapshot()).objects.keys()].sort();

test('apply, then every agent converges to the same version and objects', async (t) => {
  const ctx = await setup(t);
  const agents = [agent(ctx, 'a'), agent(ctx, 'b'), agent(ctx, 'c')];
  await Promise.all(agents.map((a) => a.start()));
  const v = (await ctx.store.write([{ op: 'put', object: service('reviews') }]))[0]!;
  await Promise.all(agents.map((a) => until(a, v!)));
  for (const a of agents) {
    t.is(a.appliedVersion, v);
    t.deepEqual(a.get('Service', 'shop/reviews')?.object.spec, service('reviews').spec);
  }
  await Promise.all(agents.map((a) => (a.reportedVersion >= v ? undefined : new Promise((r) => a.on('reported', (rv: number) => rv >= v && r(undefined))))));
  const status = await readAgents(ctx.server.client(), ctx.store.keys);
  t.deepEqual(status.map((s) => [s.node, s.health]), [['a', 'SYNCED'], ['b', 'SYNCED'], ['c', 'SYNCED']]);
});

test('1 000 rapid writes are all applied, in order, and coalesced into few change events', async (t) => {
  const ctx = await setup(t);
  const a = agent(ctx, 'a');
  await a.start();
  const seen: number[] = [];
  let changes = 0;
  a.on('applied', (_v: number, entries: Array<{ version: number }>) => seen.push(...entries.map((e) => e.version)));
  a.on('change', () => changes++);
  const store = new MeshStore(ctx.server.client());
  const writes = Array.from({ length: 1000 }, (_, i) => store.write([{ op: 'put', object: service(`svc-${i % 100}`, 'ns', 1000 + i) }]));
  const versions = (await Promise.all(writes)).flat();
  await until(a, Math.max(...versions));
  t.deepEqual(seen, [...seen].sort((x, y) => x - y), 'in version order');
  t.is(new Set(seen).size, 1000);
  t.is(a.counters.resyncGap, 0, 'no resync was needed');
  t.true(changes < 200, `${changes} change events for 1000 writes`);
  // The last write of each service wins.
  t.deepEqual((a.get('Service', 'ns/svc-99')?.object.spec as { ports: Array<{ port: number }> }).ports[0]!.port, 1999);
});

test('an agent killed and restarted resumes from its last id without a full resync', async (t) => {
  const ctx = await setup(t);
  const a = agent(ctx, 'a');
  await a.start();
  const [v1] = await ctx.store.write([{ op: 'put', object: service('one') }]);
  await until(a, v1!);
  await a.stop();
  const [, v3] = await ctx.store.write([{ op: 'put', object: service('two') }, { op: 'delete', ref: { kind: 'Service', key: 'shop/one' } }]);
  const b = agent(ctx, 'a');
  await b.start();
  await until(b, v3!);
  t.is(b.counters.fullSyncs, 0, 'caught up from the stream');
  t.is(b.counters.entriesApplied, 2);
  t.deepEqual(viewKeys(b), await redisKeys(ctx.store));
});

test('a stream trimmed under a stopped agent forces a resync that ends equal to Redis', async (t) => {
  const ctx = await setup(t);
  const a = agent(ctx, 'a');
  await a.start();
  await until(a, (await ctx.store.write([{ op: 'put', object: service('keep') }]))[0]!);
  await a.stop();
  // Far more than the stream keeps (max ~50), deleting what the agent knew.
  for (let i = 0; i < 300; i++) await ctx.store.write([{ op: 'put', object: service(`s${i % 7}`) }]);
  const [last] = await ctx.store.write([{ op: 'delete', ref: { kind: 'Service', key: 'shop/keep' } }]);
  const b = agent(ctx, 'a');
  await b.start();
  await until(b, last!);
  t.is(b.counters.resyncGap, 1);
  t.is(b.counters.fullSyncs, 1);
  t.deepEqual(viewKeys(b), await redisKeys(ctx.store));
});

test('Redis down at agent start: it serves from its disk snapshot, then catches up', async (t) => {
  const ctx = await setup(t);
  const a = agent(ctx, 'a');
  await a.start();
  const v = (await ctx.store.write([{ op: 'put', object: service('cached') }]))[0]!;
  await until(a, v!);
  await a.stop();
  await ctx.server.kill();

  const b = agent(ctx, 'a');
  await b.start();
  t.is(b.state, 'offline');
  t.is(b.appliedVersion, v);
  t.truthy(b.get('Service', 'shop/cached'), 'serving the cached object');

  await ctx.server.start();
  const client = ctx.server.client();
  t.teardown(() => client.disconnect());
  const [v2] = await new MeshStore(client).write([{ op: 'put', object: service('after') }]);
  await until(b, v2!);
  t.truthy(b.get('Service', 'shop/after'));
  t.truthy(b.get('Service', 'shop/cached'));
});

test('Redis killed during writes and restarted (AOF): no acknowledged write is lost and agents resume', async (t) => {
  const ctx = await setup(t);
  const a = agent(ctx, 'a');
  await a.start();
  const acked: number[] = [];
  let client = ctx.server.client();
  let store = new MeshStore(client);
  for (let i = 0; i < 50; i++) acked.push(...(await store.write([{ op: 'put', object: service(`w${i}`) }])));
  const inflight = Array.from({ length: 50 }, (_, i) => store.write([{ op: 'put', object: service(`x${i}`) }]).then((v) => acked.push(...v), () => {}));
  await ctx.server.kill();
  await Promise.all(inflight);
  client.disconnect();
  await ctx.server.start();
  client = ctx.server.client();
  t.teardown(() => client.disconnect());
  store = new MeshStore(client);
  const snap = await store.snapshot();
  t.true(snap.version >= Math.max(...acked), 'every acknowledged version survived');
  const [v] = await store.write([{ op: 'put', object: service('final') }]);
  await until(a, v!);
  t.deepEqual(viewKeys(a), [...snap.objects.keys(), 'Service/shop/final'].sort());
});

test('a version that goes backwards (Redis restored from an old backup) triggers a resync', async (t) => {
  const ctx = await setup(t);
  const a = agent(ctx, 'a');
  await a.start();
  const [v] = await ctx.store.write([{ op: 'put', object: service('x') }, { op: 'put', object: service('y') }]).then((vs) => [vs[1]!]);
  await until(a, v!);
  // The "restore": an empty mesh at version 0, then one new write.
  await ctx.server.client().flushall();
  const [nv] = await ctx.store.write([{ op: 'put', object: service('z') }]);
  t.is(nv, 1);
  await new Promise<void>((resolve) => a.on('applied', () => a.appliedVersion === 1 && resolve()));
  t.is(a.counters.resyncBackwards, 1);
  t.deepEqual(viewKeys(a), ['Service/shop/z']);
});

test('lazy agents keep only what they use, and follow it', async (t) => {
  const ctx = await setup(t);
  for (let i = 0; i < 20; i++) await ctx.store.write([{ op: 'put', object: service(`s${i}`) }]);
  const a = agent(ctx, 'lazy', { lazy: true });
  await a.start();
  t.is(a.current().objects.size, 0);
  t.truthy(await a.want('Service', 'shop/s3'));
  t.is(a.current().objects.size, 1);
  const [v] = await ctx.store.write([{ op: 'put', object: service('s3', 'shop', 8080) }, { op: 'put', object: service('s4', 'shop', 8080) }]).then((vs) => [vs[1]!]);
  await until(a, v!);
  t.is((a.get('Service', 'shop/s3')?.object.spec as { ports: Array<{ port: number }> }).ports[0]!.port, 8080);
  t.is(a.current().objects.size, 1, 's4 was not fetched');
  t.is(a.counters.entriesSkipped, 1);
});

test('setting a damaged snapshot aside keeps the newest few of that path, and removes nothing else', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-aside-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'snapshot.json');
  // Names like setAside's that are not its copies of this path: another file's, other suffixes, a
  // directory; and a file that merely starts with the name.
  const others = [
    'other.json.damaged-2020-01-01T00-00-00-000Z',
    'xsnapshot.json.damaged-2020-01-01T00-00-00-000Z',
    'snapshot.json.damaged-2020-01-01T00-00-00-000Z.txt',
    'snapshot.json.damaged-by-hand',
    'snapshot.json.damaged-',
    'snapshot.json.tmp-123',
    'snapshot.json.old',
  ];
  for (const n of others) writeFileSync(join(dir, n), n);
  mkdirSync(join(dir, 'snapshot.json.damaged-2019-01-01T00-00-00-000Z-sub'));
  const asides: string[] = [];
  // Out of order in time (a clock set back), and two in one millisecond (the second gets "-1").
  const times = ['2024-05-01T10:00:00.000Z', '2024-05-01T09:00:00.000Z', '2024-05-01T11:00:00.000Z', '2024-05-01T11:00:00.000Z', '2024-05-01T08:00:00.000Z'];
  for (const [i, at] of times.entries()) {
    writeFileSync(path, `damaged ${i}`);
    asides.push(setAside(path, new Date(at)));
    t.is(readFileSync(asides[i]!, 'utf8'), `damaged ${i}`, 'the one just set aside is always kept');
    t.false(existsSync(path));
  }
  const copies = readdirSync(dir).filter((n) => !others.includes(n) && !n.endsWith('-sub')).sort();
  t.deepEqual(copies, ['snapshot.json.damaged-2024-05-01T08-00-00-000Z', 'snapshot.json.damaged-2024-05-01T11-00-00-000Z', 'snapshot.json.damaged-2024-05-01T11-00-00-000Z-1']);
  t.is(copies.length, DAMAGED_KEPT);
  for (const n of others) t.is(readFileSync(join(dir, n), 'utf8'), n, `${n} left alone`);
  t.true(existsSync(join(dir, 'snapshot.json.damaged-2019-01-01T00-00-00-000Z-sub')));
});

test('a damaged disk snapshot is said, moved aside as it was, and never replaced by an empty one', async (t) => {
  // It used to be ignored without a word, then overwritten at stop by an empty version-0 snapshot
  // that the next start served as the mesh.
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-agent-'));
  const agents: AgentSync[] = [];
  t.teardown(async () => {
    // A failed assertion must not leave an agent retrying Redis for ever.
    for (const a of agents) if (a.state !== 'stopped') await a.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const path = join(dir, 'snapshot.json');
  const redis = { url: `unix://${join(dir, 'no-redis.sock')}` };
  const lines: Array<{ level: number; msg: string; path?: string; aside?: string }> = [];
  const logger = loggerTo(new Writable({ write: (c, _e, cb) => (lines.push(...String(c).split('\n').filter(Boolean).map((l) => JSON.parse(l))), cb()) }));
  const good = { format: 1, mesh: 'mesh', version: 42, lastId: '1-0', objects: [['Service/shop/web', { version: 42, object: service('web') }]] };
  const cases: Array<[string, string, RegExp]> = [
    ['truncated', JSON.stringify(good).slice(0, -3), /not valid JSON/],
    ['another format', JSON.stringify({ ...good, format: 2 }), /not a format-1 mesh snapshot/],
    ["another mesh's", JSON.stringify({ ...good, mesh: 'other' }), /the snapshot of mesh "other", not of "mesh"/],
    ['malformed objects', JSON.stringify({ ...good, objects: [['Service/shop/web', null]] }), /objects are missing or malformed/],
  ];
  for (const [what, body, why] of cases) {
    writeFileSync(path, body);
    lines.length = 0;
    const a = new AgentSync({ node: 'n', redis, cachePath: path, logger, persistIntervalMs: 5 });
    agents.push(a);
    await a.start();
    t.is(a.current().objects.size, 0, what);
    const warn = lines.find((l) => l.level === 40 && l.path === path);
    t.truthy(warn, `${what}: a warning names the file`);
    t.regex(warn!.msg, why, what);
    t.regex(warn!.aside!, /snapshot\.json\.damaged-\d{4}-/);
    t.is(readFileSync(warn!.aside!, 'utf8'), body, `${what}: kept as it was`);
    await a.stop();
    t.false(existsSync(path), `${what}: no empty snapshot written in its place`);
  }
  // Four set aside, the newest three kept (the last one among them).
  t.is(readdirSync(dir).filter((n) => n.startsWith('snapshot.json.damaged-')).length, DAMAGED_KEPT);
  // The next start has no cache: it says nothing of one, and serves nothing.
  lines.length = 0;
  const next = new AgentSync({ node: 'n', redis, cachePath: path, logger });
  agents.push(next);
  await next.start();
  t.is(next.appliedVersion, 0);
  t.false(lines.some((l) => /snapshot/.test(l.msg)), lines.map((l) => l.msg).join('\n'));
  await next.stop();
  t.false(existsSync(path));
});
