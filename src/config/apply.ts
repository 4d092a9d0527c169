// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh apply`: sources in, validated objects out, compared with what
 * the mesh holds, then written in one atomic batch (or, on a dry run, shown
 * as a diff).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import { stringify } from 'yaml';
import { keyOf, refString } from './objects.ts';
import { type MeshStore, storedJson } from './store.ts';
import { InvalidConfigError, type Issue, type SourcedObject, checkReferences, parseSource } from './validate.ts';

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

/** FILE, DIR (its *.yaml, *.yml and *.json, in name order) or "-" (stdin). */
export function readSources(paths: string[], stdin: () => string = () => readFileSync(0, 'utf8')): Source[] {
  return paths.flatMap((p) => {
    if (p === '-') return [{ name: '<stdin>', text: stdin() }];
    if (statSync(p).isDirectory()) {
      return readdirSync(p)
        .filter((f) => CONFIG_FILE.test(f))
        .sort()
        .map((f) => ({ name: join(p, f), text: readFileSync(join(p, f), 'utf8') }));
    }
    return [{ name: p, text: readFileSync(p, 'utf8') }];
  });
}

/** Parses and checks every source; throws InvalidConfigError naming every problem. */
export async function validateSources(store: MeshStore, sources: Source[]): Promise<SourcedObject[]> {
  const objects: SourcedObject[] = [];
  const issues: Issue[] = [];
  for (const s of sources) {
    const r = parseSource(s.text, s.name);
    objects.push(...r.objects);
    issues.push(...r.issues);
  }
  issues.push(...(await checkReferences(objects, (ref) => store.exists(ref))));
  if (issues.length) throw new InvalidConfigError(issues);
  return objects;
}

export async function applySources(store: MeshStore, sources: Source[], options: { dryRun?: boolean } = {}): Promise<ApplyResult[]> {
  const objects = await validateSources(store, sources);
  const results: ApplyResult[] = [];
  const changed: SourcedObject[] = [];
  for (const o of objects) {
    const key = keyOf(o.object);
    const ref = refString({ kind: o.object.kind, key });
    const existing = await store.get(o.object.kind, key);
    if (existing && storedJson(existing.object) === storedJson(o.object)) {
      results.push({ ref, action: 'unchanged', version: existing.version });
      continue;
    }
    const before = existing ? stringify(JSON.parse(storedJson(existing.object))) : '';
    const after = stringify(JSON.parse(storedJson(o.object)));
    results.push({ ref, action: existing ? 'configured' : 'created', diff: createTwoFilesPatch(`${ref} (mesh)`, `${ref} (${o.source})`, before, after, '', '', { context: 3 }) });
    changed.push(o);
  }
  if (options.dryRun || changed.length === 0) return results;
  const versions = await store.write(changed.map((c) => ({ op: 'put', object: c.object })));
  let i = 0;
  for (const r of results) if (r.action !== 'unchanged') r.version = versions[i++];
  return results;
}
