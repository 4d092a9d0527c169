// SPDX-License-Identifier: Apache-2.0
// Every core: worker processes share one port (SO_REUSEPORT), each swaps its table on change, and each
// takes the primary's zone and access-log settings (its access-log lines written by the primary), and
// admits rate-limited requests from the primary's buckets, so a limit holds for the whole node.
import test, { type ExecutionContext } from 'ava';
import { fork } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import type { MeshObject } from '../../src/config/objects.ts';
import { ProxyCore } from '../../src/proxy/core.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';
import { ProxyServer } from '../../src/proxy/server.ts';
import { ProxyWorkers } from '../../src/proxy/workers.ts';
import { backend, endpoints, obj, service } from './helpers/fixtures.ts';
import { rawExchange, statuses } from './helpers/raw.ts';
import { connect as connectH2, createServer as createH2 } from 'node:http2';
import { freePort } from '../../src/ports.ts';

// One test at a time: workers bind their port with SO_REUSEPORT, so two tests that were handed the same
// free port would share each other's connections without an error (seen: one test's requests served,
// and access-logged, by the other's workers).

const stored = (objs: MeshObject[]) => objs.map((object, i) => ({ version: i + 1, object }));
const get = (port: number, path = '/', host = 'x') => rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

/** Requests to path/0 … path/(n-1), all at once: enough connections for the kernel to spread them over every acceptor. */
const burst = (port: number, n: number, path = '/r', host?: string) => Promise.all(Array.from({ length: n }, (_, i) => get(port, `${path}/${i}`, host)));

async function startWorkers(t: ExecutionContext, count = 2): Promise<ProxyWorkers> {
  const workers = await ProxyWorkers.start(count);
  t.teardown(() => workers.stop());
  return workers;
}

test.serial('two workers on one port share the connections and follow config changes', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const workers = await startWorkers(t);
  await workers.setObjects(1, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])]));
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: 'shop/web' }]);

  const answers = await burst(port, 60);
  t.true(answers.every((r) => /"backend":"a"/.test(r.text)));
  const stats = await workers.stats();
  t.is(stats.length, 2);
  t.true(stats.every((s) => s.connectionsTotal > 0), `connections per worker: ${stats.map((s) => s.connectionsTotal).join(', ')}`);
  t.is(stats.reduce((n, s) => n + s.connectionsTotal, 0), 60);

  await workers.setObjects(2, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])]));
  const after = await burst(port, 10);
  t.true(after.every((r) => /"backend":"b"/.test(r.text)), 'every worker switched to the new table');
  t.true((await workers.stats()).every((s) => s.version === 2));
});

test.serial('a replacement worker binds the shared port again and takes its share', async (t) => {
  const a = await backend(t, 'a');
  const workers = await startWorkers(t);
  await workers.setObjects(1, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])]));
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: 'shop/web' }]);
  const restarted = new Promise<{ error?: string }>((resolve) => (workers.onRestart = resolve));
  const dead = workers.pids[0];
  process.kill(dead!, 'SIGKILL');
  t.is((await restarted).error, undefined);
  t.not(workers.pids[0], dead);
  // Only a worker listening on the port can take connections: the replacement must serve some.
  const answers = await untilEachServed(workers, 1, () => burst(port, 20));
  t.true(answers.every((r) => /"backend":"a"/.test(r.text)));
});

test.serial('workers follow changes sent as what changed: objects kept, added and removed; a replacement gets the whole mesh', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const workers = await startWorkers(t);
  // The same object instances from call to call, as the agent's view keeps them: only what changed is sent.
  const [web, webEps, api, apiEps] = stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }]), service('api', 'shop'), endpoints('api', 'shop', [{ port: b.port }])]);
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1' }]);
  const host = (name: string) => `${name}.shop.svc.cluster.local`;
  const everyWorker = async (name: string) => (await burst(port, 20, '/r', host(name))).map((r) => r.text);

  await workers.setObjects(1, [web!, webEps!]);
  t.true((await everyWorker('web')).every((x) => /"backend":"a"/.test(x)));
  t.true((await everyWorker('api')).every((x) => /^HTTP\/1.1 404/.test(x)), 'api is not in the mesh yet');

  await workers.setObjects(2, [web!, webEps!, api!, apiEps!]);
  t.true((await everyWorker('api')).every((x) => /"backend":"b"/.test(x)), 'added');
  t.true((await everyWorker('web')).every((x) => /"backend":"a"/.test(x)), 'kept');

  await workers.setObjects(3, [api!, apiEps!]);
  t.true((await everyWorker('web')).every((x) => /^HTTP\/1.1 404/.test(x)), 'removed, from every worker');

  const restarted = new Promise<{ error?: string }>((resolve) => (workers.onRestart = resolve));
  process.kill(workers.pids[0]!, 'SIGKILL');
  t.is((await restarted).error, undefined);
  const answers = await untilEachServed(workers, 1, () => burst(port, 20, '/r', host('api')));
  t.true(answers.every((r) => /"backend":"b"/.test(r.text)), 'the replacement has the mesh as it is now');
  t.true((await everyWorker('web')).every((x) => /^HTTP\/1.1 404/.test(x)));
  t.true((await workers.stats()).every((s) => s.version === 3));
});

/** web in shop: one endpoint per port, endpoint i in zones[i], round robin with locality. */
function zonedService(ports: number[], zones: string[]): MeshObject[] {
  const eps = endpoints('web', 'shop', ports.map((port) => ({ port })));
  (eps.spec as { endpoints: Array<Record<string, unknown>> }).endpoints.forEach((e, i) => (e.zone = zones[i]));
  return [service('web', 'shop'), eps, obj('ClusterPolicy', 'web', 'shop', { service: 'web', loadBalancer: { type: 'round_robin', locality: { enabled: true, failover: [] } } })];
}

test.serial("workers balance by locality in the primary's zone, a replacement worker too", async (t) => {
  const near = await backend(t, 'near');
  const far = await backend(t, 'far');
  const objects = stored(zonedService([near.port, far.port], ['z1', 'z2']));
  const workers = await startWorkers(t);
  await workers.configure({ zone: 'z1', accessLogSampling: 0 });
  await workers.setObjects(1, objects);
  // As the agent shares a pod's listener: the primary serves it too (in z1 as well) and hands it to every worker.
  const core = new ProxyCore();
  core.balancer.zone = 'z1';
  core.setTable(buildTable(1, objects));
  const own = new ProxyServer(core);
  t.teardown(() => own.close());
  const listener = await own.listen({ port: 0, host: '127.0.0.1' });
  await workers.adopt('pod', listener, {});
  const port = (listener.address() as AddressInfo).port;
  const host = 'web.shop.svc.cluster.local';

  // The three processes accept from one socket, not evenly: requests go until each worker has served two
  // (round robin without locality would have sent one of them to z2).
  const answers = await untilEachServed(workers, 2, () => burst(port, 20, '/r', host));
  t.is(answers.filter((r) => !/"backend":"near"/.test(r.text)).length, 0, 'every request stayed in z1');
  t.is(far.seen.length, 0);

  // A worker that dies is replaced, and the replacement is told the zone before it takes connections.
  const restarted = new Promise<{ error?: string }>((resolve) => (workers.onRestart = resolve));
  process.kill(workers.pids[0]!, 'SIGKILL');
  t.is((await restarted).error, undefined);
  const after = await untilEachServed(workers, 2, () => burst(port, 20, '/r', host));
  t.is(after.filter((r) => !/"backend":"near"/.test(r.text)).length, 0, 'no request left z1 after the restart');
  t.is(far.seen.length, 0);
});

/** Runs send until every worker has taken at least min connections (a bounded number of rounds), and returns all the answers. */
async function untilEachServed<T>(workers: ProxyWorkers, min: number, send: () => Promise<T[]>): Promise<T[]> {
  const all: T[] = [];
  for (let round = 0; round < 50; round++) {
    all.push(...(await send()));
    const stats = await workers.stats();
    if (stats.every((s) => s.connectionsTotal >= min)) return all;
  }
  throw new Error(`some worker took fewer than ${min} connections in 50 rounds`);
}

test.serial("workers close idle client connections after the primary's idle timeout", async (t) => {
  const a = await backend(t, 'a');
  const workers = await startWorkers(t);
  await workers.configure({ accessLogSampling: 0, idleTimeoutMs: 200 });
  await workers.setObjects(1, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])]));
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: 'shop/web' }]);
  // Keep-alive requests, several so that both workers take some; each connection is left idle after its answer.
  const keepAlive = (ms: number) => Promise.all(Array.from({ length: 20 }, (_, i) => rawExchange(port, `GET /idle/${i} HTTP/1.1\r\nHost: x\r\n\r\n`, ms)));
  const short = await keepAlive(3000);
  t.true((await workers.stats()).every((s) => s.connectionsTotal > 0), 'both workers served');
  t.true(short.every((r) => statuses(r.text)[0] === 200 && r.closed), 'every worker closed its idle connections');
  // Back to the default (minutes): the next connections stay open through a second of silence.
  await workers.configure({ accessLogSampling: 0 });
  const long = await keepAlive(1000);
  t.true(long.every((r) => statuses(r.text)[0] === 200 && !r.closed), 'the default kept them open');
});

interface AccessLine {
  component: string;
  worker: number;
  msg: string;
  method: string;
  status: number;
  request: { path: string };
}

test.serial('workers access-log the requests they serve, at the sampling the primary gives them', async (t) => {
  const a = await backend(t, 'a');
  const workers = await startWorkers(t);
  const lines: AccessLine[] = [];
  workers.onLog = (text) => lines.push(...text.trimEnd().split('\n').map((l) => JSON.parse(l) as AccessLine));
  await workers.configure({ accessLogSampling: 1 });
  await workers.setObjects(1, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])]));
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: 'shop/web' }]);

  await burst(port, 40, '/logged');
  // A worker sends the lines of the requests it served before it answers: after stats(), every line is here.
  t.true((await workers.stats()).every((s) => s.connectionsTotal > 0), 'both workers served');
  t.is(lines.length, 40);
  t.deepEqual(lines.map((l) => l.request.path).sort(), Array.from({ length: 40 }, (_, i) => `/logged/${i}`).sort());
  t.true(lines.every((l) => l.component === 'access' && l.msg === 'access' && l.method === 'GET' && l.status === 200));
  t.deepEqual([...new Set(lines.map((l) => l.worker))].sort(), [...workers.pids].sort(), 'each worker logged its own share');

  // Sampling follows the primary: 0 turns the log off in every worker, 1 turns it on again.
  await workers.configure({ accessLogSampling: 0 });
  await burst(port, 20, '/quiet');
  await workers.configure({ accessLogSampling: 1 });
  await burst(port, 20, '/loud');
  await workers.stats();
  t.false(lines.some((l) => l.request.path.startsWith('/quiet/')), 'nothing logged at sampling 0');
  t.is(lines.filter((l) => l.request.path.startsWith('/loud/')).length, 20);
});

test.serial("workers' access-log lines come out of the primary's stdout", async (t) => {
  const a = await backend(t, 'a');
  const primary = fork(new URL('./helpers/workers-primary.ts', import.meta.url).pathname, [], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  t.teardown(() => primary.kill());
  let out = '';
  const want = 40;
  const complete = new Promise<void>((resolve) =>
    primary.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if ((out.match(/"msg":"access"/g) ?? []).length >= want) resolve();
    }),
  );
  const objects = stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])]);
  primary.send({ settings: { accessLogSampling: 1 }, objects, service: 'shop/web' });
  const { port, pids } = await new Promise<{ port: number; pids: number[] }>((resolve, reject) => {
    primary.once('message', resolve as never);
    primary.once('exit', (code) => reject(new Error(`the primary exited (${code}) before it was set up`)));
  });

  await burst(port, want, '/out');
  // The lines cross a pipe the IPC answers do not wait for: wait for them, but not for ever when they never come.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([complete, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
  clearTimeout(timer);
  const access = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AccessLine & { app: string }).filter((l) => l.msg === 'access');
  t.deepEqual(access.map((l) => l.request.path).sort(), Array.from({ length: want }, (_, i) => `/out/${i}`).sort());
  t.true(access.every((l) => l.app === 'kernmesh' && l.method === 'GET' && l.status === 200 && pids.includes(l.worker)));
});

/** shop/web with a RateLimit of `tokens` for the whole node, served by two workers on one port. */
async function limitedWorkers(t: ExecutionContext, backendPort: number, tokens: number): Promise<{ workers: ProxyWorkers; port: number }> {
  const workers = await startWorkers(t);
  const limit = obj('RateLimit', 'web', 'shop', { service: 'web', maxTokens: tokens, fillInterval: '1h' });
  await workers.setObjects(1, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: backendPort }]), limit]));
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: 'shop/web' }]);
  return { workers, port };
}

const tally = (codes: number[]) => codes.reduce<Record<number, number>>((n, c) => ((n[c] = (n[c] ?? 0) + 1), n), {});

test.serial("a rate limit is the node's, not each worker's: together the workers admit what it allows", async (t) => {
  const a = await backend(t, 'a');
  const { workers, port } = await limitedWorkers(t, a.port, 10);
  const answers = await untilEachServed(workers, 5, () => burst(port, 30));
  // Each worker with a bucket of its own would have let up to twice as many through.
  t.like(tally(answers.map((r) => statuses(r.text)[0] ?? 0)), { 200: 10, 429: answers.length - 10 });
  t.is(a.seen.length, 10);
});

test.serial('HTTP/2 streams through workers wait for the node\'s tokens the same way', async (t) => {
  const h2 = createH2();
  h2.on('stream', (s) => s.respond({ ':status': 200 }, { endStream: true }));
  await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => h2.close(() => r())));
  const { workers, port } = await limitedWorkers(t, (h2.address() as AddressInfo).port, 6);
  // One session per request, all at once: the kernel spreads them over both workers.
  const once = () =>
    Promise.all(
      Array.from({ length: 16 }, () => {
        const session = connectH2(`http://127.0.0.1:${port}`);
        session.on('error', () => {});
        return new Promise<number>((resolve) => {
          const req = session.request({ ':path': '/h2' }).end();
          req.on('response', (h) => resolve(Number(h[':status'])));
          req.on('error', () => resolve(0));
          req.resume();
        }).finally(() => session.close());
      }),
    );
  const codes = await untilEachServed(workers, 3, once);
  t.like(tally(codes), { 200: 6, 429: codes.length - 6 });
});
