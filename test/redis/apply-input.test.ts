// SPDX-License-Identifier: Apache-2.0
// `kernmesh apply` with input it cannot use: every case a clear error naming
// the file (and document), the invalid-config exit code, and nothing written.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshStore } from '../../src/config/store.ts';
import { RedisServer } from './helpers/redis-server.ts';

const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function kernmesh(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, REDIS_URL: url } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<{ server: RedisServer; store: MeshStore; dir: string }> {
  const server = await new RedisServer().start();
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-apply-'));
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, store: new MeshStore(server.client()), dir };
}

const service = (port: number) => `kind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: ${port}}]}\n`;

test('the same object in two files of one apply is refused, naming both places, and nothing is written', async (t) => {
  const { server, store, dir } = await setup(t);
  writeFileSync(join(dir, '1.yaml'), service(80));
  writeFileSync(join(dir, '2.yaml'), service(8080));

  const r = await kernmesh(server.url, ['apply', '-f', dir]);
  t.is(r.code, 3, r.stderr);
  t.true(r.stderr.includes(`${join(dir, '2.yaml')}: document 1 at metadata.name: Service/shop/web is also defined in ${join(dir, '1.yaml')} document 1`), r.stderr);
  t.is(await store.version(), 0, 'nothing was written');

  // The same across two -f paths.
  const two = await kernmesh(server.url, ['apply', '-f', join(dir, '1.yaml'), '-f', join(dir, '2.yaml')]);
  t.is(two.code, 3, two.stderr);
  t.regex(two.stderr, /Service\/shop\/web is also defined in .*1\.yaml document 1/);
  t.is(await store.version(), 0);
});

test('a document with too many aliases is named, and the other documents are still checked', async (t) => {
  const { server, store, dir } = await setup(t);
  const bomb = 'a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]';
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, [service(80), bomb, 'kind: Bogus\nmetadata: {name: x}'].join('\n---\n'));

  const r = await kernmesh(server.url, ['apply', '-f', file]);
  t.is(r.code, 3, r.stderr);
  t.true(r.stderr.includes(`${file}: document 2: too many aliases`), r.stderr);
  t.regex(r.stderr, /expand them/);
  t.true(r.stderr.includes(`${file}: document 3 at kind:`), 'the next document is still checked');
  t.is(await store.version(), 0, 'the valid document was not written either');
});

test('a missing path, an empty directory or a file of only comments is an error that names it', async (t) => {
  const { server, store, dir } = await setup(t);
  const missing = join(dir, 'missing.yaml');
  const r = await kernmesh(server.url, ['apply', '-f', missing]);
  t.is(r.code, 3, r.stderr);
  t.true(r.stderr.includes(`cannot read ${missing}: no such file or directory; check the path`), r.stderr);
  t.notRegex(r.stderr, /ENOENT: no such file/, 'not the raw system error');

  const empty = join(dir, 'empty');
  mkdirSync(empty);
  writeFileSync(join(empty, 'README.txt'), 'not config');
  const e = await kernmesh(server.url, ['apply', '-f', empty]);
  t.is(e.code, 3, e.stderr);
  t.true(e.stderr.includes(`no objects found in ${empty}`), e.stderr);

  const comments = join(dir, 'comments.yaml');
  writeFileSync(comments, '# just a comment\n---\n');
  const c = await kernmesh(server.url, ['apply', '-f', comments]);
  t.is(c.code, 3, c.stderr);
  t.true(c.stderr.includes(`no objects found in ${comments}`), c.stderr);

  t.is(await store.version(), 0);
});

test('a Service on another one\'s VIP:port or host is refused, naming both and what to do, and nothing is written', async (t) => {
  const { server, store, dir } = await setup(t);
  // Both used to be accepted, and each node then routed the VIP to whichever it met last.
  const svc = (name: string, spec: string) => `kind: Service\nmetadata: {name: ${name}, namespace: shop}\nspec: ${spec}\n`;
  const a = join(dir, 'a.yaml');
  writeFileSync(a, svc('a', '{ports: [{port: 80}], addresses: [10.96.1.1], hosts: [web.example]}'));
  t.is((await kernmesh(server.url, ['apply', '-f', a])).code, 0);

  const vip = join(dir, 'b.yaml');
  writeFileSync(vip, svc('b', '{ports: [{port: 8080}, {port: 80}], addresses: [10.96.1.1]}'));
  const r = await kernmesh(server.url, ['apply', '-f', vip]);
  t.is(r.code, 3, r.stderr);
  t.true(r.stderr.includes(`${vip}: document 1 at spec.addresses.0: Service/shop/b claims address 10.96.1.1:80, which Service/shop/a (in the mesh) already has`), r.stderr);
  t.regex(r.stderr, /give one of them another address, port or host, or delete Service\/shop\/a first/);
  t.notRegex(r.stderr, /10\.96\.1\.1:8080/, 'another port of the same address is no clash');

  const host = join(dir, 'c.yaml');
  writeFileSync(host, svc('c', '{ports: [{port: 80}], hosts: [web.example]}'));
  const h = await kernmesh(server.url, ['apply', '-f', host]);
  t.is(h.code, 3, h.stderr);
  t.true(h.stderr.includes(`${host}: document 1 at spec.hosts.0: Service/shop/c claims host web.example, which Service/shop/a (in the mesh) already has`), h.stderr);

  // Two new Services in one apply: the second is named, with where the first is.
  const pair = join(dir, 'pair.yaml');
  writeFileSync(pair, [svc('d', '{ports: [{port: 80}], addresses: [10.96.1.2]}'), svc('e', '{ports: [{port: 80}], addresses: [10.96.1.2]}')].join('---\n'));
  const p = await kernmesh(server.url, ['apply', '-f', pair]);
  t.is(p.code, 3, p.stderr);
  t.true(p.stderr.includes(`${pair}: document 2 at spec.addresses.0: Service/shop/e claims address 10.96.1.2:80, which Service/shop/d (${pair} document 1) already has`), p.stderr);
  t.is(await store.version(), 1, 'nothing was written');

  // Moving the VIP from a to b in one apply is no clash.
  const move = join(dir, 'move.yaml');
  writeFileSync(move, [svc('a', '{ports: [{port: 80}], addresses: [10.96.1.9], hosts: [web.example]}'), svc('b', '{ports: [{port: 80}], addresses: [10.96.1.1]}')].join('---\n'));
  const m = await kernmesh(server.url, ['apply', '-f', move]);
  t.is(m.code, 0, m.stderr);

  // A clash written before this check does not block re-applying the objects unchanged.
  await store.write([{ op: 'put', object: { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name: 'old', namespace: 'shop' }, spec: { hosts: [], addresses: ['10.96.1.1'], ports: [{ port: 80, protocol: 'http' }] } } }]);
  const again = await kernmesh(server.url, ['apply', '-f', move]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /Service\/shop\/b unchanged/);
});
