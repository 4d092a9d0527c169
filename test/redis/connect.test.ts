// SPDX-License-Identifier: Apache-2.0
// The ways to reach Redis that a deployment uses: a password, Sentinel, TLS.
import test from 'ava';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { type RedisConfig, connectExplained, connectRedis } from '../../src/config/redis.ts';
import { MeshStore } from '../../src/config/store.ts';
import { service } from './helpers/objects.ts';
import { freePort } from '../../src/ports.ts';

/** A free TCP port on loopback (Sentinel and TLS need TCP, not a unix socket). */

/** Starts redis-server (or sentinel) with args; resolves once `ready` says so; stops by pid in teardown. */
async function start(t: import('ava').ExecutionContext, args: string[], ready: (c: Redis) => Promise<boolean>, cfg: RedisConfig): Promise<void> {
  const proc: ChildProcess = spawn('redis-server', args, { stdio: 'ignore' });
  t.teardown(() => new Promise<void>((r) => (proc.exitCode !== null ? r() : (proc.once('exit', () => r()), proc.kill('SIGKILL')))));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const c = connectRedis(cfg, 'probe', { retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      if (await ready(c)) return;
    } catch {
      /* not yet */
    } finally {
      c.disconnect();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server ${args.join(' ')} did not become ready`);
}

async function roundTrip(cfg: RedisConfig): Promise<number> {
  const c = connectRedis(cfg, 'test', { retryStrategy: () => null });
  c.on('error', () => {});
  try {
    await connectExplained(c);
    const store = new MeshStore(c);
    await store.write([{ op: 'put', object: service('reached') }]);
    return (await store.get('Service', 'shop/reached'))!.version;
  } finally {
    c.disconnect();
  }
}

test('a password protected Redis: reached with the password, refused without', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'r.sock');
  const cfg = { url: `unix://${sock}`, password: 's3cret' };
  await start(t, ['--port', '0', '--unixsocket', sock, '--dir', dir, '--save', '', '--requirepass', 's3cret'], async (c) => (await c.ping()) === 'PONG', cfg);
  t.is(await roundTrip(cfg), 1);
  await t.throwsAsync(roundTrip({ url: `unix://${sock}` }), { message: /NOAUTH|Authentication required/ });
});

test('Redis behind Sentinel: the store finds the master through it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-sentinel-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [master, sentinel] = [await freePort(), await freePort()];
  await start(t, ['--port', String(master), '--bind', '127.0.0.1', '--dir', dir, '--save', ''], async (c) => (await c.ping()) === 'PONG', { url: `redis://127.0.0.1:${master}` });
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(conf, `port ${sentinel}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor kmmaster 127.0.0.1 ${master} 1\n`);
  await start(t, [conf, '--sentinel'], async (c) => Array.isArray(await c.call('SENTINEL', 'get-master-addr-by-name', 'kmmaster')), { url: `redis://127.0.0.1:${sentinel}` });
  t.is(await roundTrip({ sentinels: [{ host: '127.0.0.1', port: sentinel }], sentinelName: 'kmmaster' }), 1);
});

test('Redis over TLS (rediss://) with a CA the client is given', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = (n: string) => join(dir, n);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=kernmesh-test-ca', '-keyout', f('ca.key'), '-out', f('ca.crt')], { stdio: 'pipe' });
  execFileSync('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('server.key'), '-out', f('server.csr')], { stdio: 'pipe' });
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  execFileSync('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('ext.cnf'), '-out', f('server.crt')], { stdio: 'pipe' });
  const port = await freePort();
  const cfg: RedisConfig = { url: `rediss://127.0.0.1:${port}`, tls: { ca: readFileSync(f('ca.crt'), 'utf8') } };
  await start(
    t,
    ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', f('server.crt'), '--tls-key-file', f('server.key'), '--tls-ca-cert-file', f('ca.crt'), '--tls-auth-clients', 'no', '--dir', dir, '--save', ''],
    async (c) => (await c.ping()) === 'PONG',
    cfg,
  );
  t.is(await roundTrip(cfg), 1);
  await t.throwsAsync(roundTrip({ url: `rediss://127.0.0.1:${port}` }), { message: /self[- ]signed|unable to verify|certificate/i }, 'an unknown CA is refused');
});
