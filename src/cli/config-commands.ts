// SPDX-License-Identifier: Apache-2.0
/** `kernmesh apply | get | delete | schema`: the mesh's configuration in Redis. */
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { applySources, readSources } from '../config/apply.ts';
import { exampleObject, jsonSchemaOf } from '../config/docs.ts';
import { KINDS, type Kind, kindFromUser, KIND_NAMES } from '../config/model/kinds.ts';
import type { StoredObject } from '../config/store.ts';
import { KmError } from '../errors.ts';
import { addRedisFlags, type RedisFlags, withStore } from './mesh-client.ts';
import { formatTable, summarize } from './tables.ts';

function kindArg(s: string): Kind {
  const k = kindFromUser(s);
  if (!k) throw new KmError('KM_ERR_INVALID_CONFIG', `unknown kind "${s}": one of ${KIND_NAMES.join(', ')}`);
  return k;
}

function keyFor(kind: Kind, name: string, namespace: string | undefined): string {
  if (!KINDS[kind].namespaced) return name;
  return name.includes('/') ? name : `${namespace ?? 'default'}/${name}`;
}

type Output = 'table' | 'json' | 'yaml' | 'wide';

function printObjects(objs: StoredObject[], output: Output): void {
  const plain = objs.map((o) => o.object);
  if (output === 'json') console.log(JSON.stringify(plain.length === 1 ? plain[0] : plain, null, 2));
  else if (output === 'yaml') console.log(plain.map((o) => stringify(o)).join('---\n'));
  else {
    const wide = output === 'wide';
    const rows = objs.map((o) => [o.object.kind, o.object.metadata.namespace ?? '', o.object.metadata.name, String(o.version), summarize(o.object, wide)]);
    console.log(formatTable(['KIND', 'NAMESPACE', 'NAME', 'VERSION', wide ? 'SPEC' : 'SUMMARY'], rows));
  }
}

export function registerConfigCommands(program: Command): void {
  addRedisFlags(
    program
      .command('apply')
      .description('validate mesh objects (YAML or JSON, multi-document) and write them to the mesh, atomically')
      .requiredOption('-f, --filename <path...>', 'file, directory, or - for stdin')
      .option('--dry-run', 'validate and show what would change; write nothing'),
  ).action(async (opts: RedisFlags & { filename: string[]; dryRun?: boolean }) => {
    const sources = readSources(opts.filename);
    const results = await withStore(opts, (store) => applySources(store, sources, { dryRun: !!opts.dryRun }));
    for (const r of results) {
      console.log(`${r.ref} ${r.action}${opts.dryRun ? ' (dry run)' : r.version ? ` (version ${r.version})` : ''}`);
      if (opts.dryRun && r.diff) console.log(r.diff);
    }
  });

  addRedisFlags(
    program
      .command('get')
      .description('show mesh objects')
      .argument('<kind>', `one of ${KIND_NAMES.join(', ')} (plural and lower case work too)`)
      .argument('[name]', 'a name, or namespace/name')
      .option('-n, --namespace <ns>', 'the namespace (default: all namespaces when no name is given)')
      .option('-o, --output <format>', 'table, wide, json or yaml', 'table'),
  ).action(async (kindText: string, name: string | undefined, opts: RedisFlags & { namespace?: string; output: Output }) => {
    const kind = kindArg(kindText);
    if (!['table', 'wide', 'json', 'yaml'].includes(opts.output)) throw new KmError('KM_ERR_INVALID_CONFIG', `unknown output "${opts.output}": table, wide, json or yaml`);
    await withStore(opts, async (store) => {
      if (name) {
        const key = keyFor(kind, name, opts.namespace);
        const found = await store.get(kind, key);
        if (!found) throw new KmError('KM_ERR_NOT_FOUND', `${kind}/${key} does not exist`);
        printObjects([found], opts.output);
        return;
      }
      const all = (await store.list(kind)).filter((o) => !opts.namespace || o.object.metadata.namespace === opts.namespace);
      printObjects(all, opts.output);
    });
  });

  addRedisFlags(
    program
      .command('delete')
      .description('delete a mesh object')
      .argument('<kind>')
      .argument('<name>', 'a name, or namespace/name')
      .option('-n, --namespace <ns>', 'the namespace', 'default'),
  ).action(async (kindText: string, name: string, opts: RedisFlags & { namespace: string }) => {
    const kind = kindArg(kindText);
    const key = keyFor(kind, name, opts.namespace);
    const [version] = await withStore(opts, (store) => store.write([{ op: 'delete', ref: { kind, key } }]));
    console.log(`${kind}/${key} deleted (version ${version})`);
  });

  program
    .command('schema')
    .description("print a kind's JSON Schema (or every kind's), or an example object")
    .argument('[kind]')
    .option('--example', 'print an example object (YAML) instead')
    .action((kindText: string | undefined, opts: { example?: boolean }) => {
      const kinds = kindText ? [kindArg(kindText)] : [...KIND_NAMES];
      if (opts.example) {
        console.log(kinds.map((k) => stringify(exampleObject(k))).join('---\n'));
        return;
      }
      const out = Object.fromEntries(kinds.map((k) => [k, jsonSchemaOf(k)]));
      console.log(JSON.stringify(kindText ? out[kinds[0]!] : out, null, 2));
    });
}
