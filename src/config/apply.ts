// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh apply`: sources in, validated objects out, compared with what
 * the mesh holds, then written in one atomic batch (or, on a dry run, shown
 * as a diff). The checks and the diff read the mesh at one version, and the
 * batch is written only if the mesh is still at it (as kubectl does with
 * resourceVersion): two applies at once cannot both pass the clash check and
 * both write. One that lost the race starts over on the new state.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { stringify } from 'yaml';
import { KmError, errnoCode } from '../errors.ts';
import { canonicalJson, keyOf, refString, subsetUsesOf } from './objects.ts';
import type { MeshStore } from './store.ts';
import { InvalidConfigError, type Issue, type SourcedObject, checkClaims, checkReferences, checkSubsets, parseSource, placeOf, withoutDuplicates } from './validate.ts';

export interface Source {
  name: string;
  text: string;
}

export interface ApplyResult {
  ref: string;
  action: 'created' | 'configured' | 'unchanged';
  version?: number;
  diff?: string;
}

const CONFIG_FILE = /\.(ya?ml|json)$/;

/**
 * FILE, DIR (its *.yaml, *.yml and *.json, in name order) or "-" (stdin).
 * Stdin is read to its end asynchronously: a pipe whose writer is slow to
 * start (`(sleep 1; cat f) | kernmesh apply -f -`, or `kernmesh get … |`)
 * has nothing to read at first, and a synchronous read of fd 0 fails with
 * EAGAIN when Node made it non-blocking.
 */
export async function readSources(paths: string[], stdin: () => Promise<string> = readStdin): Promise<Source[]> {
  if (paths.filter((p) => p === '-').length > 1) throw new KmError('KM_ERR_INVALID_CONFIG', 'stdin (-) can be read only once: give -f - once; nothing was written');
  const out: Source[] = [];
  for (const p of paths) {
    if (p === '-') {
      out.push({ name: '<stdin>', text: await stdin() });
      continue;
    }
    if (!readable(p, () => statSync(p)).isDirectory()) {
      out.push({ name: p, text: readable(p, () => readFileSync(p, 'utf8')) });
      continue;
    }
    const files = readable(p, () => readdirSync(p))
      .filter((f) => CONFIG_FILE.test(f))
      .sort();
    // An empty directory is most likely the wrong one: saying so beats a silent success.
    if (files.length === 0) throw new KmError('KM_ERR_INVALID_CONFIG', `no objects found in ${p}: it holds no .yaml, .yml or .json files; check the path; nothing was written`);
    out.push(...files.map((f) => ({ name: join(p, f), text: readable(join(p, f), () => readFileSync(join(p, f), 'utf8')) })));
  }
  return out;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  } catch (err) {
    throw new KmError('KM_ERR_INVALID_CONFIG', `cannot read stdin: ${(err as Error).message}; nothing was written`, { cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs a file system read, turning its failure into an error that names the path. */
function readable<T>(path: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'no such file or directory' : errnoCode(err) === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new KmError('KM_ERR_INVALID_CONFIG', `cannot read ${path}: ${why}; check the path (a file, a directory of .yaml/.yml/.json files, or - for stdin) and its permissions; nothing was written`, { cause: err });
  }
}

/** Parses and checks every source; throws InvalidConfigError naming every problem. */
export async function validateSources(store: MeshStore, sources: Source[]): Promise<SourcedObject[]> {
  const parsed: SourcedObject[] = [];
  const issues: Issue[] = [];
  for (const s of sources) {
    const r = parseSource(s.text, s.name);
    parsed.push(...r.objects);
    issues.push(...r.issues);
  }
  // Sources are checked together: the same object in two files must not be settled by file order.
  const { objects, issues: duplicates } = withoutDuplicates(parsed);
  issues.push(...duplicates);
  if (objects.length === 0 && issues.length === 0) {
    throw new KmError('KM_ERR_INVALID_CONFIG', `no objects found in ${sources.map((s) => s.name).join(', ')}: only comments, empty documents or empty lists; check the path; nothing was written`);
  }
  issues.push(...(await checkReferences(objects, (ref) => store.exists(ref))));
  // The checks that need more than a lookup per reference read the mesh once, and only when they have something to check.
  if (objects.some((o) => o.object.kind === 'Service' || o.object.kind === 'ClusterPolicy' || subsetUsesOf(o.object).length > 0)) {
    const stored = (await store.list()).map((s) => s.object);
    const services = stored.filter((o) => o.kind === 'Service');
    if (objects.some((o) => o.object.kind === 'Service')) issues.push(...checkClaims(objects, services));
    const serviceKeys = new Set(services.map((o) => keyOf(o)));
    issues.push(...(await checkSubsets(objects, stored, async (key) => serviceKeys.has(key))));
  }
  if (issues.length) throw new InvalidConfigError(issues);
  return objects;
}

/** Rounds of read, check and write before apply gives up on a mesh that keeps changing under it. */
export const APPLY_ATTEMPTS = 5;

export async function applySources(store: MeshStore, sources: Source[], options: { dryRun?: boolean } = {}): Promise<ApplyResult[]> {
  for (let attempt = 1; attempt <= APPLY_ATTEMPTS; attempt++) {
    const results = await applyOnce(store, sources, options);
    if (results) return results;
  }
  throw new KmError('KM_ERR_CONFLICT', `the mesh changed ${APPLY_ATTEMPTS} times while applying (other writers got in between its checks and its write); nothing was written; try again`);
}

/** One round from scratch; undefined when another write came in between its reads and its end. */
async function applyOnce(store: MeshStore, sources: Source[], options: { dryRun?: boolean }): Promise<ApplyResult[] | undefined> {
  // The version before any read the decision rests on: every write bumps it, so one that lands after it, even between the reads below, is seen at the end.
  const seen = await store.version();
  const objects = await validateSources(store, sources);
  const results: ApplyResult[] = [];
  const changed: SourcedObject[] = [];
  const stale: string[] = [];
  for (const o of objects) {
    const key = keyOf(o.object);
    const ref = refString({ kind: o.object.kind, key });
    const existing = await store.get(o.object.kind, key);
    // Compared by meaning: key order and a spelled-out default namespace are no change (no new version, no agent rebuild).
    const was = existing ? canonicalJson(existing.object) : null;
    const now = canonicalJson(o.object);
    // Unchanged whatever its version says: writing nothing cannot undo another writer's change.
    if (existing && was === now) {
      results.push({ ref, action: 'unchanged', version: existing.version });
      continue;
    }
    if (o.expectedVersion !== undefined && existing?.version !== o.expectedVersion) stale.push(staleMessage(ref, o, existing?.version));
    // Both sides in the same key order, so the diff shows what changed and not how it was written.
    const before = was === null ? '' : stringify(JSON.parse(was));
    const after = stringify(JSON.parse(now));
    results.push({ ref, action: existing ? 'configured' : 'created', diff: createTwoFilesPatch(`${ref} (mesh)`, `${ref} (${o.source})`, before, after, '', '', { context: 3 }) });
    changed.push(o);
  }
  // No retry: an object's version only grows, so one that has left the version it was read at never comes back to it.
  if (stale.length) throw new KmError('KM_ERR_CONFLICT', `${stale.length === 1 ? 'an object' : 'objects'} changed since ${stale.length === 1 ? 'it was' : 'they were'} read; nothing was written:\n${stale.map((m) => `  ${m}`).join('\n')}`);
  // A run that writes nothing (a dry run, or all unchanged) still reports on one state of the mesh.
  if (options.dryRun || changed.length === 0) return (await store.version()) === seen ? results : undefined;
  let versions: number[];
  try {
    versions = await store.write(changed.map((c) => ({ op: 'put', object: c.object })), { expectedVersion: seen });
  } catch (err) {
    if (err instanceof KmError && err.code === 'KM_ERR_CONFLICT') return undefined;
    throw err;
  }
  let i = 0;
  for (const r of results) if (r.action !== 'unchanged') r.version = versions[i++];
  return results;
}

/**
 * The `version:` an object is applied with (as `kernmesh get` prints it) is
 * a precondition, as kubectl's resourceVersion: the version of the object it
 * was read at, which it must still be at. Else another write changed (or
 * deleted) it since, and writing this edit would silently undo that one.
 */
function staleMessage(ref: string, o: SourcedObject, now: number | undefined): string {
  const said = `${placeOf(o)} has version: ${o.expectedVersion}`;
  if (now === undefined) return `${ref} does not exist (${said}): it was deleted after it was read, or was read from another mesh; to create it, remove its version: line`;
  return `${ref} is at version ${now} now, not ${o.expectedVersion} (${said}): another write changed it since; get it again (kernmesh get ${o.object.kind} ${keyOf(o.object)} -o yaml), make the edit there and apply that, or remove the version: line to overwrite the other change`;
}
