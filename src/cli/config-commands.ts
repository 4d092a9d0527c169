// SPDX-License-Identifier: Apache-2.0
/** `kernmesh apply | get | delete | schema`: the mesh's configuration in Redis. */
import { type Command, InvalidArgumentError, Option } from 'commander';
import { stringify } from 'yaml';
import { applySources, readSources } from '../config/apply.ts';
import { deleteObject } from '../config/delete.ts';
import { exampleObject, jsonSchemaOf } from '../config/docs.ts';
import { KINDS, type Kind, kindFromUser, KIND_NAMES } from '../config/model/kinds.ts';
import { API_VERSION, LIST_KIND, notFoundMessage, refString } from '../config/objects.ts';
import type { StoredObject } from '../config/store.ts';
import { KmError } from '../errors.ts';
import { addRedisFlags, type RedisFlags, withStore } from './mesh-client.ts';
import { formatTable, summarize } from './tables.ts';

/** A kind as users write it; an unknown one is a usage error (exit 2), as Commander reports it. */
function kindArg(s: string): Kind {
  const k = kindFromUser(s);
  if (!k) throw new InvalidArgumentError(`unknown kind "${s}": one of ${KIND_NAMES.join(', ')} (plural, lower case and short names such as svc work too)`);
  return k;
}

function keyFor(kind: Kind, name: string, namespace: string | undefined): string {
  if (!KINDS[kind].namespaced) return name;
  return name.includes('/') ? name : `${namespace ?? 'default'}/${name}`;
}

const OUTPUTS = ['table', 'wide', 'json', 'yaml'] as const;
type Output = (typeof OUTPUTS)[number];

/**
 * One object as itself; a listing as kubectl prints one, a List with items
 * (however many), so that scripts read one shape and `apply -f` takes it
 * back. Each object carries its version, which apply takes as a precondition.
 */
function printObjects(objs: StoredObject[], output: Output, listing: boolean): void {
  const plain = objs.map((o) => o.object);
  if (output === 'json' || output === 'yaml') {
    const body = listing ? { apiVersion: API_VERSION, kind: LIST_KIND, items: plain } : plain[0];
    console.log(output === 'json' ? JSON.stringify(body, null, 2) : stringify(body).trimEnd());
    return;
  }
  const wide = output === 'wide';
  const rows = objs.map((o) => [o.object.kind, o.object.metadata.namespace ?? '', o.object.metadata.name, String(o.version), summarize(o.object, wide)]);
  console.log(formatTable(['KIND', 'NAMESPACE', 'NAME', 'VERSION', wide ? 'SPEC' : 'SUMMARY'], rows));
}

const APPLY_HELP = `
A file holds objects as YAML documents (---), a JSON or YAML array of them, or a
List with items: what get -o yaml|json prints applies as it is.
An object's version: (get prints it) is a precondition, as kubectl's resourceVersion:
the object must still be at that version, else apply writes nothing and exits 7
(get it again, redo the edit, apply that; or remove the version: line to overwrite).
An object applied unchanged is reported unchanged, whatever its version: says.`;

const DELETE_HELP = `
What refers to what:
  a Service: its Routes (spec.service, split destinations, mirrors), ClusterPolicies,
    AuthorizationPolicies, RateLimits and Workloads (spec.service), and Routes of
    other services that split or mirror to it;
  a ClusterPolicy: the Routes that split traffic to a subset only it defines.
While any of them is left, delete refuses (exit 3, nothing deleted) and names them:
delete or change them first, or pass --cascade to delete them along with it (and
whatever refers to those), in one atomic write; each object deleted is listed.
A Service's Endpoints (same namespace and name) are part of it and always go with it.`;

export function registerConfigCommands(program: Command): void {
  addRedisFlags(
    program
      .command('apply')
      .description('validate mesh objects (YAML or JSON, multi-document) and write them to the mesh, atomically')
      .requiredOption('-f, --filename <path...>', 'file, directory, or - for stdin')
      .option('--dry-run', 'validate and show what would change; write nothing')
      .addHelpText('after', APPLY_HELP),
  ).action(async (opts: RedisFlags & { filename: string[]; dryRun?: boolean }) => {
    const sources = await readSources(opts.filename);
    const results = await withStore(opts, (store) => applySources(store, sources, { dryRun: !!opts.dryRun }));
    for (const r of results) {
      console.log(`${r.ref} ${r.action}${opts.dryRun ? ' (dry run)' : r.version ? ` (version ${r.version})` : ''}`);
      if (opts.dryRun && r.diff) console.log(r.diff);
    }
  });

  addRedisFlags(
    program
      .command('get')
      .description('show mesh objects (-o yaml|json prints what apply -f takes back)')
      .argument('<kind>', `one of ${KIND_NAMES.join(', ')} (plural and lower case work too)`, kindArg)
      .argument('[name]', 'a name, or namespace/name')
      .option('-n, --namespace <ns>', 'the namespace (default: all namespaces when no name is given, else default)')
      .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUTS).default('table')),
  ).action(async (kind: Kind, name: string | undefined, opts: RedisFlags & { namespace?: string; output: Output }) => {
    await withStore(opts, async (store) => {
      if (name) {
        const ref = { kind, key: keyFor(kind, name, opts.namespace) };
        const found = await store.get(kind, ref.key);
        if (!found) throw new KmError('KM_ERR_NOT_FOUND', notFoundMessage(ref, KINDS[kind].namespaced ? (await store.list(kind)).map((o) => o.object) : []));
        printObjects([found], opts.output, false);
        return;
      }
      const all = (await store.list(kind)).filter((o) => !opts.namespace || o.object.metadata.namespace === opts.namespace);
      printObjects(all, opts.output, true);
    });
  });

  addRedisFlags(
    program
      .command('delete')
      .description('delete a mesh object; refused while other objects refer to it, unless --cascade')
      .argument('<kind>', `one of ${KIND_NAMES.join(', ')} (plural and lower case work too)`, kindArg)
      .argument('<name>', 'a name, or namespace/name')
      .option('-n, --namespace <ns>', 'the namespace', 'default')
      .option('--cascade', 'also delete the objects that refer to it, in the same atomic write')
      .option('--dry-run', 'show what would be deleted; delete nothing')
      .addHelpText('after', DELETE_HELP),
  ).action(async (kind: Kind, name: string, opts: RedisFlags & { namespace: string; cascade?: boolean; dryRun?: boolean }) => {
    const ref = { kind, key: keyFor(kind, name, opts.namespace) };
    const deleted = await withStore(opts, (store) => deleteObject(store, ref, { cascade: !!opts.cascade, dryRun: !!opts.dryRun }));
    for (const d of deleted) console.log(`${refString(d.ref)} deleted${opts.dryRun ? ' (dry run)' : ` (version ${d.version})`}${d.why ? `: ${d.why}` : ''}`);
  });

  program
    .command('schema')
    .description("print a kind's JSON Schema (or every kind's), or an example object")
    .argument('[kind]', `one of ${KIND_NAMES.join(', ')}; default: every kind`, kindArg)
    .option('--example', 'print an example object (YAML) instead; every kind\'s examples together apply to an empty mesh')
    .action((kind: Kind | undefined, opts: { example?: boolean }) => {
      const kinds = kind ? [kind] : [...KIND_NAMES];
      if (opts.example) {
        console.log(kinds.map((k) => stringify(exampleObject(k))).join('---\n'));
        return;
      }
      const out = Object.fromEntries(kinds.map((k) => [k, jsonSchemaOf(k)]));
      console.log(JSON.stringify(kind ? out[kinds[0]!] : out, null, 2));
    });
}
