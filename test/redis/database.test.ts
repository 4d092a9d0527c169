// SPDX-License-Identifier: Apache-2.0
// A mesh in a Redis database other than 0 (redis://host:port/N, unix:///path?db=N): every
// connection is in it (the CLI's, an agent's command and stream connections), and a
// database the server does not have is refused, never replaced by database 0.
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { readAgents } from '../../src/config/agents.ts';
import { MeshStore } from '../../src/config/store.ts';
import { AgentSync } from '../../src/config/sync.ts';
import { freePort } from '../../src/ports.ts';
import { service } from './helpers/objects.ts';
import { RedisServer } from './helpers/redis-server.ts';

const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function kernmesh(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, ...args], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** redis-server on a loopback TCP port (16 databases, the default), stopped by pid in teardown. */
async function tcpRedis(t: ExecutionContext): Promise<{ port: number; db: (n: number) => Redis }> {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-redis-db-'));
  const port = await freePort();
  const proc: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''], { stdio: 'ignore' });
  const clients: Redis[] = [];
  t.teardown(async () => {
    for (const c of clients) c.disconnect();
    if (proc.exitCode === null) await new Promise<void>((r) => (proc.once('exit', () => r()), proc.kill('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  });
  const db = (n: number) => {
    const c = new Redis({ port, host: '127.0.0.1', db: n, maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  const probe = db(0);
  for (let i = 0; ; i++) {
    try {
      if ((await probe.ping()) === 'PONG') break;
    } catch {
      if (i > 200) throw new Error('redis-server did not come up');
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return { port, db };
}

/** Resolves once the agent has applied version v. */
function applied(a: AgentSync, v: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (a.appliedVersion >= v) return resolve();
    const timer = setTimeout(() => reject(new Error(`stuck at ${a.appliedVersion}, wanted ${v}`)), 10_000);
    a.on('change', () => {
      if (a.appliedVersion >= v) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

test('redis://host:port/3: apply, get, an agent (snapshot, stream and report) all use database 3, and database 0 stays empty', async (t) => {
  const { port, db } = await tcpRedis(t);
  const url = `redis://127.0.0.1:${port}/3`;
  const applyResult = await kernmesh(['apply', '-f', '-', '--redis', url], stringify(service('reviews')));
  t.is(applyResult.code, 0, applyResult.stderr);
  const three = new MeshStore(db(3));
  t.is(await three.version(), 1);
  const got = await kernmesh(['get', 'services', '-o', 'json', '--redis', url]);
  t.is(got.code, 0, got.stderr);
  t.regex(got.stdout, /"name": ?"reviews"/);

  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-agent-db-'));
  const agent = new AgentSync({ node: 'n1', redis: { url }, blockMs: 200, reportIntervalMs: 100, cachePath: join(dir, 'snapshot.json') });
  t.teardown(async () => {
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await agent.start();
  t.is(agent.appliedVersion, 1, 'the snapshot came from database 3');
  await three.write([{ op: 'put', object: service('ratings') }]);
  await applied(agent, 2); // through the stream connection
  t.truthy(agent.get('Service', 'shop/ratings'));
  await agent.report();
  t.deepEqual((await readAgents(three.redis, three.keys)).map((a) => a.node), ['n1'], 'the report is in database 3');
  t.is(await db(0).dbsize(), 0, 'nothing in database 0');
});

test('unix:///path?db=2 works as well', async (t) => {
  const server = await new RedisServer().start();
  t.teardown(() => server.stop());
  const r = await kernmesh(['apply', '-f', '-', '--redis', `${server.url}?db=2`], stringify(service('reviews')));
  t.is(r.code, 0, r.stderr);
  const zero = server.client();
  t.is(await zero.dbsize(), 0);
  await zero.select(2);
  t.is(await new MeshStore(zero).version(), 1);
});

test('a database the server does not have: refused with the reason, and nothing is read or written in database 0', async (t) => {
  const { port, db } = await tcpRedis(t);
  const url = `redis://127.0.0.1:${port}/99`;
  // Something in database 0 that a fallback would show.
  await new MeshStore(db(0)).write([{ op: 'put', object: service('in-db-zero') }]);
  const before = await db(0).dbsize();

  const got = await kernmesh(['get', 'services', '--redis', url]);
  t.is(got.code, 5, got.stdout);
  t.regex(got.stderr, /Redis refused database 99: ERR DB index is out of range/);
  t.notRegex(got.stdout, /in-db-zero/);
  const applyResult = await kernmesh(['apply', '-f', '-', '--redis', url], stringify(service('reviews')));
  t.is(applyResult.code, 5, applyResult.stderr);

  // A long-running client retries (Redis may get the database later), failing each time, and never runs a command in database 0.
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-agent-db-'));
  const agent = new AgentSync({ node: 'n1', redis: { url }, blockMs: 200, reportIntervalMs: 50, cachePath: join(dir, 'snapshot.json') });
  t.teardown(async () => {
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await agent.start();
  await new Promise((r) => setTimeout(r, 1000));
  t.is(agent.appliedVersion, 0, 'it did not load database 0');
  t.is(await db(0).dbsize(), before, 'no report, no key written in database 0');
  t.is(await db(0).hlen(new MeshStore(db(0)).keys.agents), 0);
});
