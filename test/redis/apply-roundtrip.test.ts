// SPDX-License-Identifier: Apache-2.0
// What kernmesh prints, kernmesh applies: stdin however late it comes,
// `schema --example` on an empty mesh, `get -o yaml|json` back unchanged,
// and the version get prints as a precondition (kubectl's resourceVersion).
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { KIND_NAMES, KINDS } from '../../src/config/model/kinds.ts';
import { MeshStore } from '../../src/config/store.ts';
import { kernmesh, lateShellPipe, piped } from './helpers/cli.ts';
import { RedisServer } from './helpers/redis-server.ts';

async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<{ server: RedisServer; store: MeshStore; dir: string }> {
  const server = await new RedisServer().start();
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-roundtrip-'));
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, store: new MeshStore(server.client()), dir };
}

const web = (port: number) => `kind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: ${port}}]}\n`;

test('apply -f - reads stdin to its end, however late the writer starts', async (t) => {
  const { server, store, dir } = await setup(t);
  const file = join(dir, 'web.yaml');
  writeFileSync(file, web(80));
  // What the README's user ran; it failed with "EAGAIN: resource temporarily unavailable, read".
  const shell = await lateShellPipe(server.url, file, ['apply', '-f', '-']);
  t.is(shell.code, 0, shell.stderr);
  t.is(shell.stdout, 'Service/shop/web created (version 1)\n');

  const late = await kernmesh(server.url, ['apply', '-f', '-', '--dry-run'], { input: web(8080), inputDelayMs: 1000 });
  t.is(late.code, 0, late.stderr);
  t.regex(late.stdout, /^Service\/shop\/web configured \(dry run\)/);

  // get's output piped straight into apply.
  const { from, to } = await piped(server.url, ['get', 'svc', '-o', 'json'], ['apply', '-f', '-']);
  t.is(from.code, 0, from.stderr);
  t.is(to.code, 0, to.stderr);
  t.is(to.stdout, 'Service/shop/web unchanged (version 1)\n');
  t.is(await store.version(), 1);
});

test('kernmesh schema --example applies as it is to an empty mesh', async (t) => {
  const { server, store, dir } = await setup(t);
  const ex = await kernmesh(server.url, ['schema', '--example']);
  t.is(ex.code, 0, ex.stderr);
  const file = join(dir, 'ex.yaml');
  writeFileSync(file, ex.stdout);

  const applied = await kernmesh(server.url, ['apply', '-f', file]);
  t.is(applied.code, 0, applied.stderr);
  t.deepEqual(
    applied.stdout.trim().split('\n').map((l) => l.split('/')[0]),
    [...KIND_NAMES],
    'one object of every kind',
  );
  t.true(applied.stdout.trim().split('\n').every((l) => / created \(version \d+\)$/.test(l)), applied.stdout);
  t.is(await store.version(), KIND_NAMES.length);

  const again = await kernmesh(server.url, ['apply', '-f', file]);
  t.is(again.code, 0, again.stderr);
  t.true(again.stdout.trim().split('\n').every((l) => l.includes(' unchanged ')), again.stdout);
});

test('what get prints, one object or a List, YAML or JSON, applies back unchanged for every kind', async (t) => {
  const { server, store, dir } = await setup(t);
  const ex = await kernmesh(server.url, ['schema', '--example']);
  writeFileSync(join(dir, 'ex.yaml'), ex.stdout);
  t.is((await kernmesh(server.url, ['apply', '-f', join(dir, 'ex.yaml')])).code, 0);
  const version = await store.version();

  // Each kind's object by name as YAML, and each kind's listing (a List) as JSON.
  const named = await Promise.all(
    KIND_NAMES.map((k) => {
      const { name, namespace } = KINDS[k].example.metadata;
      return kernmesh(server.url, ['get', k, name, ...(namespace ? ['-n', namespace] : []), '-o', 'yaml']);
    }),
  );
  const lists = await Promise.all(KIND_NAMES.map((k) => kernmesh(server.url, ['get', k, '-o', 'json'])));
  for (const r of [...named, ...lists]) t.is(r.code, 0, r.stderr);
  t.like(parse(named[1]!.stdout), { kind: 'Service', version: 2 }, 'get prints the version');
  t.like(JSON.parse(lists[1]!.stdout), { kind: 'List', items: [{ kind: 'Service', version: 2 }] });

  for (const [form, runs, ext] of [['yaml', named, 'yaml'], ['json', lists, 'json']] as const) {
    const files = runs.map((r, i) => {
      const f = join(dir, `${form}-${i}.${ext}`);
      writeFileSync(f, r.stdout);
      return f;
    });
    const back = await kernmesh(server.url, ['apply', ...files.flatMap((f) => ['-f', f])]);
    t.is(back.code, 0, `${form}: ${back.stderr}`);
    const lines = back.stdout.trim().split('\n');
    t.is(lines.length, KIND_NAMES.length, back.stdout);
    t.true(lines.every((l) => / unchanged \(version \d+\)$/.test(l)), back.stdout);
  }
  t.is(await store.version(), version, 'nothing written');
});

test("an object's version (as get prints it) is a precondition: a stale edit is refused with exit 7, an unchanged one is unchanged", async (t) => {
  const { server, store, dir } = await setup(t);
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: web(80) })).code, 0);
  const read = parse((await kernmesh(server.url, ['get', 'svc', 'web', '-n', 'shop', '-o', 'yaml'])).stdout) as { version: number; spec: { ports: Array<{ port: number }> } };
  t.is(read.version, 1);
  const withPort = (port: number) => stringify({ ...read, spec: { ...read.spec, ports: [{ port }] } });

  // The edit of what was read goes in.
  const edited = await kernmesh(server.url, ['apply', '-f', '-'], { input: withPort(8080) });
  t.is(edited.code, 0, edited.stderr);
  t.is(edited.stdout, 'Service/shop/web configured (version 2)\n');
  // The same file again: nothing to write, nothing overwritten.
  t.is((await kernmesh(server.url, ['apply', '-f', '-'], { input: withPort(8080) })).stdout, 'Service/shop/web unchanged (version 2)\n');

  // Another edit of the version-1 copy would undo the change made since: refused, nothing written.
  const file = join(dir, 'stale.yaml');
  writeFileSync(file, withPort(9090));
  const stale = await kernmesh(server.url, ['apply', '-f', file]);
  t.is(stale.code, 7, stale.stderr);
  t.true(stale.stderr.includes(`Service/shop/web is at version 2 now, not 1 (${file} document 1 has version: 1): another write changed it since; get it again`), stale.stderr);
  t.regex(stale.stderr, /nothing was written[\s\S]*\[KM_ERR_CONFLICT\]/);
  const dry = await kernmesh(server.url, ['apply', '-f', file, '--dry-run']);
  t.is(dry.code, 7, 'a dry run says the same');
  // In a List too, and the other objects of the batch are not written either.
  const list = stringify({ kind: 'List', items: [parse(web(80).replace('name: web', 'name: api')), parse(withPort(9090))] });
  const inList = await kernmesh(server.url, ['apply', '-f', '-'], { input: list });
  t.is(inList.code, 7, inList.stderr);
  t.true(inList.stderr.includes('<stdin> document 1 items.1 has version: 1'), inList.stderr);
  t.is(await store.version(), 2);

  // Deleted since it was read: refused too, saying how to create it again.
  t.is((await kernmesh(server.url, ['delete', 'svc', 'web', '-n', 'shop'])).code, 0);
  const gone = await kernmesh(server.url, ['apply', '-f', file]);
  t.is(gone.code, 7, gone.stderr);
  t.regex(gone.stderr, /Service\/shop\/web does not exist \(.* has version: 1\): it was deleted after it was read.*remove its version: line/);
  const without = await kernmesh(server.url, ['apply', '-f', '-'], { input: withPort(9090).replace(/^version: 1\n/m, '') });
  t.is(without.code, 0, without.stderr);
  t.is(without.stdout, 'Service/shop/web created (version 4)\n');
});
