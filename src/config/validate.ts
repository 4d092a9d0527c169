// SPDX-License-Identifier: Apache-2.0
/**
 * From user text to validated objects: multi-document YAML or JSON, every
 * problem named by source, document and path, and cross-references checked
 * against what the mesh (plus this batch) will hold.
 */
import { type Document, type YAMLError, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { KmError } from '../errors.ts';
import { KINDS, type Ref, isKind } from './model/kinds.ts';
import { claimId, claimLabel, serviceClaims } from './claims.ts';
import { API_VERSION, Envelope, LIST_KIND, type MeshObject, canonicalJson, keyOf, refOf, referencesOf, refString, subsetsByService, subsetUsesOf } from './objects.ts';

export interface Issue {
  source: string;
  /** 1-based document index within the source. */
  document: number;
  path: string;
  message: string;
}

export function formatIssue(i: Issue): string {
  return `${i.source}: document ${i.document}${i.path ? ` at ${i.path}` : ''}: ${i.message}`;
}

export class InvalidConfigError extends KmError {
  readonly issues: Issue[];
  constructor(issues: Issue[]) {
    super('KM_ERR_INVALID_CONFIG', `invalid configuration; nothing was written:\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`);
    this.issues = issues;
  }
}

export interface SourcedObject {
  object: MeshObject;
  source: string;
  document: number;
  /** Where in its document, for an item of a list ("items.2", "[2]"); empty for a document of its own. */
  at?: string;
  /** The `version:` it was written with (as `kernmesh get` prints it): the version it must still be at. */
  expectedVersion?: number;
}

/** "mesh.yaml document 2", "get.json document 1 items.3": where an object was written, for messages. */
export function placeOf(o: Pick<SourcedObject, 'source' | 'document' | 'at'>): string {
  return `${o.source} document ${o.document}${o.at ? ` ${o.at}` : ''}`;
}

/** A path within an object, prefixed with where the object is in its document. */
export function pathIn(o: Pick<SourcedObject, 'at'>, path: string): string {
  return [o.at, path].filter(Boolean).join('.');
}

function zodIssues(err: z.ZodError, source: string, document: number, prefix: string): Issue[] {
  return err.issues.map((i) => ({ source, document, path: [prefix, ...i.path.map(String)].filter(Boolean).join('.'), message: i.message }));
}

/** kubectl's List, as `kernmesh get KIND -o yaml|json` prints several objects; its items are checked one by one. */
const ListEnvelope = z
  .object({
    apiVersion: z.enum([API_VERSION, 'v1']).optional(),
    kind: z.literal(LIST_KIND),
    metadata: z.record(z.string(), z.unknown()).optional(),
    items: z.array(z.unknown()),
  })
  .strict();

/** Parses and validates every document of one source; collects all issues. */
export function parseSource(text: string, source: string): { objects: SourcedObject[]; issues: Issue[] } {
  const objects: SourcedObject[] = [];
  const issues: Issue[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const document = i + 1;
    if (doc.errors.length) {
      for (const e of doc.errors) issues.push({ source, document, path: '', message: `not valid YAML/JSON: ${yamlProblem(e, text)}` });
      return;
    }
    const raw = documentValue(doc);
    if ('message' in raw) {
      issues.push({ source, document, path: '', message: raw.message });
      return;
    }
    const value = raw.value;
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    // Several objects in one document: a JSON or YAML array of them, or a List (what get prints).
    if (Array.isArray(value)) {
      value.forEach((item, n) => parseObject(item, { source, document, at: `[${n}]` }, objects, issues));
      return;
    }
    if ((value as { kind?: unknown }).kind === LIST_KIND) {
      const l = ListEnvelope.safeParse(value);
      if (!l.success) issues.push(...zodIssues(l.error, source, document, ''));
      else l.data.items.forEach((item, n) => parseObject(item, { source, document, at: `items.${n}` }, objects, issues));
      return;
    }
    parseObject(value, { source, document }, objects, issues);
  });
  const unique = withoutDuplicates(objects);
  return { objects: unique.objects, issues: [...issues, ...unique.issues] };
}

/** Checks one object (a document, or an item of one) and adds it or its issues. */
function parseObject(value: unknown, where: { source: string; document: number; at?: string }, objects: SourcedObject[], issues: Issue[]): void {
  const { source, document } = where;
  const prefix = pathIn(where, '');
  const issue = (path: string, message: string) => issues.push({ source, document, path: pathIn(where, path), message });
  const env = Envelope.safeParse(value);
  // The spec is checked whenever the kind is known, so one pass names every problem.
  const kindName = (value as { kind?: unknown } | null)?.kind;
  const info = typeof kindName === 'string' && isKind(kindName) ? KINDS[kindName] : undefined;
  const spec = info?.spec.safeParse((value as { spec?: unknown }).spec ?? {});
  if (!env.success) issues.push(...zodIssues(env.error, source, document, prefix));
  if (spec && !spec.success) issues.push(...zodIssues(spec.error, source, document, pathIn(where, 'spec')));
  if (!env.success || !info || !spec?.success) return;
  if (!info.namespaced && env.data.metadata.name !== 'mesh') {
    issue('metadata.name', `${env.data.kind} is one object per mesh and must be named "mesh"`);
    return;
  }
  const object: MeshObject = {
    apiVersion: env.data.apiVersion,
    kind: env.data.kind,
    // One shape whether the namespace was written or left to its default (a re-apply compares equal).
    metadata: info.namespaced
      ? { name: env.data.metadata.name, namespace: env.data.metadata.namespace ?? 'default', ...(env.data.metadata.labels ? { labels: env.data.metadata.labels } : {}) }
      : { name: env.data.metadata.name },
    spec: spec.data as Record<string, unknown>,
  };
  objects.push({ object, source, document, ...(where.at ? { at: where.at } : {}), ...(env.data.version !== undefined ? { expectedVersion: env.data.version } : {}) });
}

/**
 * A YAML error's first line, with the line it points at instead of the
 * snippet the library appends after a colon (which one line cannot hold).
 */
function yamlProblem(e: YAMLError, text: string): string {
  const head = e.message.split('\n')[0]!.replace(/:\s*$/, '');
  const line = e.linePos?.[0]?.line;
  if (!line) return head;
  const lines = text.split(/\r?\n/);
  const shown = lines[line - 1];
  if (shown === undefined || (line === lines.length && shown === '')) return `${head} (the end of the input)`;
  if (!shown.trim()) return `${head} (an empty line)`;
  return `${head}: ${JSON.stringify(shown.length > 100 ? `${shown.slice(0, 99)}…` : shown)}`;
}

/**
 * A document's value, or why it has none. The yaml library refuses to expand
 * alias-heavy documents (a "billion laughs" guard) by throwing, which would
 * otherwise end the whole apply without naming the document.
 */
function documentValue(doc: Document.Parsed): { value: unknown } | { message: string } {
  try {
    return { value: doc.toJS() };
  } catch (err) {
    const message = (err as Error).message;
    if (/alias/i.test(message)) return { message: 'too many aliases to expand safely; expand them (write the repeated values out in full)' };
    return { message: `cannot be read: ${message}` };
  }
}

/**
 * The same object defined twice, in one source or across the sources of one
 * apply, is an issue: which one should win is not for kernmesh to guess.
 * Only the first of each is kept, so that a later check over several sources
 * names each duplicate once.
 */
export function withoutDuplicates(objects: SourcedObject[]): { objects: SourcedObject[]; issues: Issue[] } {
  const issues: Issue[] = [];
  const seen = new Map<string, SourcedObject>();
  for (const o of objects) {
    const id = `${o.object.kind}/${keyOf(o.object)}`;
    const first = seen.get(id);
    if (first) issues.push({ source: o.source, document: o.document, path: pathIn(o, 'metadata.name'), message: `${id} is also defined in ${placeOf(first)}` });
    else seen.set(id, o);
  }
  return { objects: [...seen.values()], issues };
}

/**
 * Every reference of the batch must resolve to an object that exists once
 * the batch is applied (in the batch, or already in the mesh).
 */
export async function checkReferences(batch: SourcedObject[], exists: (ref: Ref) => Promise<boolean>): Promise<Issue[]> {
  const inBatch = new Set(batch.map((b) => refString({ kind: b.object.kind, key: keyOf(b.object) })));
  const issues: Issue[] = [];
  for (const b of batch) {
    for (const ref of referencesOf(b.object)) {
      if (inBatch.has(refString(ref)) || (await exists(ref))) continue;
      issues.push({ source: b.source, document: b.document, path: pathIn(b, 'spec'), message: `refers to ${refString(ref)}, which does not exist` });
    }
  }
  return issues;
}

/**
 * Every subset the batch's Routes send traffic to must be defined, once the
 * batch is applied, by a ClusterPolicy of its Service (in the batch or the
 * mesh): else every request sent there would be a 503 (no healthy upstream).
 * And a ClusterPolicy the batch changes must not take away a subset that a
 * Route left in the mesh still uses (as delete refuses to take away what
 * others use). A Route that already named a missing subset before this
 * batch does not block unrelated applies; re-applied, it is checked.
 */
export async function checkSubsets(batch: SourcedObject[], stored: MeshObject[], serviceExists: (key: string) => Promise<boolean>): Promise<Issue[]> {
  const replaced = new Set(batch.map((b) => refString(refOf(b.object))));
  const storedPolicies = stored.filter((o) => o.kind === 'ClusterPolicy');
  const batchPolicies = batch.filter((b) => b.object.kind === 'ClusterPolicy');
  const before = subsetsByService(storedPolicies);
  const after = subsetsByService([...storedPolicies.filter((p) => !replaced.has(refString(refOf(p)))), ...batchPolicies.map((b) => b.object)]);
  const issues: Issue[] = [];
  for (const b of batch) {
    for (const use of subsetUsesOf(b.object)) {
      if (after.get(use.service)?.has(use.subset)) continue;
      // A Service that does not exist is named already (checkReferences): its subsets are beside the point.
      if (!replaced.has(`Service/${use.service}`) && !(await serviceExists(use.service))) continue;
      issues.push({ source: b.source, document: b.document, path: pathIn(b, use.path), message: missingSubset(use.service, use.subset, after.get(use.service)) });
    }
  }
  // Routes in the mesh that this batch leaves without a subset they use: named at each ClusterPolicy that took it away.
  const taken = new Map<string, { policy: SourcedObject; service: string; subset: string; users: Map<string, string[]> }>();
  const inBatch = new Map(batchPolicies.map((b) => [refString(refOf(b.object)), b]));
  for (const r of stored) {
    if (replaced.has(refString(refOf(r)))) continue;
    for (const use of subsetUsesOf(r)) {
      const definers = before.get(use.service)?.get(use.subset);
      if (!definers || after.get(use.service)?.has(use.subset)) continue;
      // Every ClusterPolicy that defined it is in the batch (else it would still be defined).
      for (const d of definers) {
        const id = `${d} ${use.service} ${use.subset}`;
        const entry = taken.get(id) ?? { policy: inBatch.get(d)!, service: use.service, subset: use.subset, users: new Map() };
        const route = refString(refOf(r));
        entry.users.set(route, [...(entry.users.get(route) ?? []), use.path]);
        taken.set(id, entry);
      }
    }
  }
  for (const t of taken.values()) {
    const users = [...t.users].map(([route, paths]) => `${route} (at ${paths.join(', ')})`);
    const one = users.length === 1;
    issues.push({
      source: t.policy.source,
      document: t.policy.document,
      path: pathIn(t.policy, 'spec.subsets'),
      message: `takes subset ${t.subset} away from Service/${t.service}, which ${users.join(', ')} in the mesh still ${one ? 'uses' : 'use'}: change ${one ? 'that Route' : 'those Routes'} (first, or in this same apply), or keep the subset`,
    });
  }
  return issues;
}

function missingSubset(service: string, subset: string, defined: Map<string, string[]> | undefined): string {
  const where = `sends traffic to subset ${subset} of Service/${service}`;
  if (!defined?.size) return `${where}, which has no subsets: define ${subset} under spec.subsets of a ClusterPolicy with service: ${service} (in this apply or the mesh), or leave subset out to use all of its endpoints`;
  const policies = [...new Set([...defined.values()].flat())];
  const names = policies.join(', ');
  return `${where}, which has no such subset (${names} ${policies.length > 1 ? 'define' : 'defines'} ${[...defined.keys()].join(', ')}): name one of those, or add ${subset} to spec.subsets of ${policies.length > 1 ? 'one of them' : names}`;
}

/**
 * No two Services may claim one VIP:port or host once the batch is applied:
 * a connection or request there could reach only one of them. Each Service
 * the batch creates or changes is checked against the mesh's other Services
 * (stored: every stored Service) and the batch's earlier ones; one re-applied
 * unchanged is not, so a clash written before this check does not block
 * unrelated applies (its routing table settles it, and status shows it).
 */
export function checkClaims(batch: SourcedObject[], stored: MeshObject[]): Issue[] {
  const services = batch.filter((b) => b.object.kind === 'Service');
  const replaced = new Set(services.map((b) => keyOf(b.object)));
  const holders = new Map<string, { key: string; where: string }>();
  const hold = (o: MeshObject, where: string) => {
    for (const c of serviceClaims(o)) if (!holders.has(claimId(c))) holders.set(claimId(c), { key: keyOf(o), where });
  };
  const storedByKey = new Map(stored.map((o) => [keyOf(o), o]));
  const changed: SourcedObject[] = [];
  for (const o of stored) if (!replaced.has(keyOf(o))) hold(o, 'in the mesh');
  for (const b of services) {
    const before = storedByKey.get(keyOf(b.object));
    if (before && canonicalJson(before) === canonicalJson(b.object)) hold(b.object, 'in the mesh');
    else changed.push(b);
  }
  const issues: Issue[] = [];
  for (const b of changed) {
    for (const c of serviceClaims(b.object)) {
      const other = holders.get(claimId(c));
      if (!other || other.key === keyOf(b.object)) continue;
      const them = refString({ kind: 'Service', key: other.key });
      issues.push({
        source: b.source,
        document: b.document,
        path: pathIn(b, c.path),
        message: `${refString({ kind: 'Service', key: keyOf(b.object) })} claims ${claimLabel(c)}, which ${them} (${other.where}) already has: one of them would never be reached; give one of them another address, port or host, or delete ${them} first`,
      });
    }
    hold(b.object, placeOf(b));
  }
  return issues;
}
