// SPDX-License-Identifier: Apache-2.0
/**
 * From user text to validated objects: multi-document YAML or JSON, every
 * problem named by source, document and path, and cross-references checked
 * against what the mesh (plus this batch) will hold.
 */
import { type Document, parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { KmError } from '../errors.ts';
import { KINDS, type Ref, isKind } from './model/kinds.ts';
import { claimId, claimLabel, serviceClaims } from './claims.ts';
import { Envelope, type MeshObject, canonicalJson, keyOf, referencesOf, refString } from './objects.ts';

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
}

function zodIssues(err: z.ZodError, source: string, document: number, prefix: string): Issue[] {
  return err.issues.map((i) => ({ source, document, path: [prefix, ...i.path.map(String)].filter(Boolean).join('.'), message: i.message }));
}

/** Parses and validates every document of one source; collects all issues. */
export function parseSource(text: string, source: string): { objects: SourcedObject[]; issues: Issue[] } {
  const objects: SourcedObject[] = [];
  const issues: Issue[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const document = i + 1;
    if (doc.errors.length) {
      for (const e of doc.errors) issues.push({ source, document, path: '', message: `not valid YAML/JSON: ${e.message.split('\n')[0]}` });
      return;
    }
    const raw = documentValue(doc);
    if ('message' in raw) {
      issues.push({ source, document, path: '', message: raw.message });
      return;
    }
    if (raw.value === null || raw.value === undefined) return; // an empty document (a trailing ---)
    const env = Envelope.safeParse(raw.value);
    // The spec is checked whenever the kind is known, so one pass names every problem.
    const kindName = (raw.value as { kind?: unknown }).kind;
    const info = typeof kindName === 'string' && isKind(kindName) ? KINDS[kindName] : undefined;
    const spec = info?.spec.safeParse((raw.value as { spec?: unknown }).spec ?? {});
    if (!env.success) issues.push(...zodIssues(env.error, source, document, ''));
    if (spec && !spec.success) issues.push(...zodIssues(spec.error, source, document, 'spec'));
    if (!env.success || !info || !spec?.success) return;
    if (!info.namespaced && env.data.metadata.name !== 'mesh') {
      issues.push({ source, document, path: 'metadata.name', message: `${env.data.kind} is one object per mesh and must be named "mesh"` });
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
    objects.push({ object, source, document });
  });
  const unique = withoutDuplicates(objects);
  return { objects: unique.objects, issues: [...issues, ...unique.issues] };
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
    if (first) issues.push({ source: o.source, document: o.document, path: 'metadata.name', message: `${id} is also defined in ${first.source} document ${first.document}` });
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
      issues.push({ source: b.source, document: b.document, path: 'spec', message: `refers to ${refString(ref)}, which does not exist` });
    }
  }
  return issues;
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
        path: c.path,
        message: `${refString({ kind: 'Service', key: keyOf(b.object) })} claims ${claimLabel(c)}, which ${them} (${other.where}) already has: one of them would never be reached; give one of them another address, port or host, or delete ${them} first`,
      });
    }
    hold(b.object, `${b.source} document ${b.document}`);
  }
  return issues;
}
