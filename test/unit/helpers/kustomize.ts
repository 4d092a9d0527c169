// SPDX-License-Identifier: Apache-2.0
/**
 * A small kustomize renderer for the tests of deploy/: `kubectl kustomize`
 * cannot be assumed on a CI machine, and no npm package renders a
 * kustomization without downloading kustomize's Go binary.
 *
 * It knows exactly the fields deploy/ uses and throws on any other, so that
 * nobody adds one that the tests would silently ignore:
 *
 * - `resources`: YAML files inside the kustomization's folder (kustomize's
 *   default load restriction), and folders holding their own kustomization;
 * - `namespace`: set on namespaced objects, a Namespace object renamed to it,
 *   and binding subjects that name one of the rendered ServiceAccounts moved
 *   with it;
 * - `labels` with `includeSelectors: false`: metadata, and with
 *   `includeTemplates: true` also pod templates and a StatefulSet's volume
 *   claim templates. Selectors are immutable once applied, which is why
 *   deploy/ uses `labels` rather than `commonLabels` (which writes into them);
 * - `images` with `newName` and `newTag`, on containers and init containers;
 * - `patches` from a file holding JSON6902 operations (add, replace, remove),
 *   with a target by kind and name (group, version, namespace optional).
 *
 * Transformers run in kustomize's order: namespace, patches, labels, images.
 * Two places are stricter than kustomize: a patch target or an image entry
 * that matches nothing is an error here (kustomize says nothing).
 * Objects come out in resource order (kustomize sorts them by kind).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

/** Every kind the renderer knows: its scope, and where its pod template is. */
const KINDS: Record<string, { namespaced: boolean; podTemplate?: boolean }> = {
  'v1/Namespace': { namespaced: false },
  'v1/ServiceAccount': { namespaced: true },
  'v1/ConfigMap': { namespaced: true },
  'v1/Service': { namespaced: true },
  'v1/ResourceQuota': { namespaced: true },
  'rbac.authorization.k8s.io/v1/ClusterRole': { namespaced: false },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { namespaced: false },
  'rbac.authorization.k8s.io/v1/Role': { namespaced: true },
  'rbac.authorization.k8s.io/v1/RoleBinding': { namespaced: true },
  'apps/v1/Deployment': { namespaced: true, podTemplate: true },
  'apps/v1/DaemonSet': { namespaced: true, podTemplate: true },
  'apps/v1/StatefulSet': { namespaced: true, podTemplate: true },
};

const FIELDS = ['apiVersion', 'kind', 'resources', 'namespace', 'labels', 'images', 'patches'];
const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface PatchOp {
  op: 'add' | 'replace' | 'remove';
  path: string;
  value?: Json;
}

/** One rendered object and the namespace its file gave it. */
interface Loaded {
  obj: KubeObject;
  origin: string;
  readonly originalNamespace: string | undefined;
}

/** Binding subjects already tied to a ServiceAccount by an inner kustomization. */
const boundSubjects = new WeakSet<JsonObject>();

export class KustomizeError extends Error {
  override name = 'KustomizeError';
}

/** Renders the kustomization in `dir` as `kubectl kustomize dir` would, or throws. */
export function kustomize(dir: string): KubeObject[] {
  return build(resolve(dir)).map((l) => l.obj);
}

function build(dir: string): Loaded[] {
  const file = KUSTOMIZATION_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file) throw new KustomizeError(`${dir}: no kustomization.yaml`);
  const k: unknown = parse(readFileSync(file, 'utf8'));
  if (!isObject(k)) throw new KustomizeError(`${file}: not a mapping`);
  for (const field of Object.keys(k)) {
    if (!FIELDS.includes(field)) {
      throw new KustomizeError(`${file}: kustomization field "${field}" is not supported by test/unit/helpers/kustomize.ts (it knows ${FIELDS.join(', ')}): teach it there first`);
    }
  }
  if (k.apiVersion !== undefined && k.apiVersion !== 'kustomize.config.k8s.io/v1beta1') throw new KustomizeError(`${file}: apiVersion ${String(k.apiVersion)}`);
  if (k.kind !== undefined && k.kind !== 'Kustomization') throw new KustomizeError(`${file}: kind ${String(k.kind)}`);

  const loaded: Loaded[] = [];
  const ids = new Set<string>();
  for (const entry of list(k.resources, file, 'resources')) {
    if (typeof entry !== 'string') throw new KustomizeError(`${file}: resources: ${JSON.stringify(entry)} is not a path`);
    for (const l of loadResource(dir, entry, file)) {
      const id = objectId(l.obj);
      if (ids.has(id)) throw new KustomizeError(`${l.origin}: ${id} is already in ${file}'s resources`);
      ids.add(id);
      loaded.push(l);
    }
  }

  if (k.namespace !== undefined) setNamespace(loaded, str(k.namespace, file, 'namespace'));
  for (const [i, p] of list(k.patches, file, 'patches').entries()) applyPatch(loaded, p, dir, `${file}: patches[${i}]`);
  for (const [i, l] of list(k.labels, file, 'labels').entries()) addLabels(loaded, l, `${file}: labels[${i}]`);
  for (const [i, img] of list(k.images, file, 'images').entries()) setImage(loaded, img, `${file}: images[${i}]`);
  return loaded;
}

function loadResource(dir: string, entry: string, file: string): Loaded[] {
  if (/^[a-z]+:\/\//i.test(entry) || entry.startsWith('github.com/')) throw new KustomizeError(`${file}: remote resource ${entry} is not supported`);
  const path = resolve(dir, entry);
  if (!existsSync(path)) throw new KustomizeError(`${file}: resource ${entry} does not exist`);
  if (statSync(path).isDirectory()) return build(path);
  // kustomize's default load restriction: files only from inside the kustomization's folder.
  if (!inside(dir, path)) throw new KustomizeError(`${file}: resource file ${entry} is outside ${dir}`);
  const out: Loaded[] = [];
  for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
    if (doc.errors.length) throw new KustomizeError(`${path}: ${doc.errors[0]!.message}`);
    const obj: unknown = doc.toJS();
    if (obj === null || obj === undefined) continue;
    if (!isObject(obj) || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string' || !isObject(obj.metadata) || typeof obj.metadata.name !== 'string') {
      throw new KustomizeError(`${path}: every document needs apiVersion, kind and metadata.name`);
    }
    kindInfo(obj as unknown as KubeObject, path);
    out.push({ obj: obj as unknown as KubeObject, origin: path, originalNamespace: obj.metadata.namespace as string | undefined });
  }
  return out;
}

function setNamespace(loaded: Loaded[], namespace: string): void {
  const serviceAccounts = loaded.filter((l) => l.obj.kind === 'ServiceAccount');
  for (const { obj, origin } of loaded) {
    if (kindInfo(obj, origin).namespaced) obj.metadata.namespace = namespace;
    if (obj.kind === 'Namespace') obj.metadata.name = namespace;
    if (obj.kind !== 'RoleBinding' && obj.kind !== 'ClusterRoleBinding') continue;
    // kustomize's name reference: a subject that names a rendered ServiceAccount
    // follows it, now and through every outer kustomization. It is matched in
    // the namespace its file gave it (none counting as "default"); a subject
    // without a namespace matches by name.
    for (const s of (obj.subjects ?? []) as JsonObject[]) {
      if (s.kind !== 'ServiceAccount') continue;
      const bound = boundSubjects.has(s) || serviceAccounts.some((l) => l.obj.metadata.name === s.name && (!s.namespace || (l.originalNamespace ?? 'default') === s.namespace));
      if (!bound) continue;
      boundSubjects.add(s);
      s.namespace = namespace;
    }
  }
}

function applyPatch(loaded: Loaded[], p: unknown, dir: string, where: string): void {
  if (!isObject(p)) throw new KustomizeError(`${where}: not a mapping`);
  only(p, ['path', 'target'], where);
  const file = resolve(dir, str(p.path, where, 'path'));
  if (!inside(dir, file)) throw new KustomizeError(`${where}: patch file ${String(p.path)} is outside ${dir}`);
  const ops: unknown = parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(ops)) throw new KustomizeError(`${file}: only JSON6902 patches (a list of operations) are supported, not strategic merge`);
  if (!isObject(p.target)) throw new KustomizeError(`${where}: a target is required`);
  const target = p.target;
  only(target, ['group', 'version', 'kind', 'name', 'namespace'], `${where}.target`);
  const matches = loaded.filter(({ obj }) => {
    const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
    return (
      (target.kind === undefined || target.kind === obj.kind) &&
      (target.name === undefined || target.name === obj.metadata.name) &&
      (target.group === undefined || target.group === group) &&
      (target.version === undefined || target.version === version) &&
      (target.namespace === undefined || target.namespace === obj.metadata.namespace)
    );
  });
  if (!matches.length) throw new KustomizeError(`${where}: target ${JSON.stringify(target)} matches no object`);
  for (const { obj } of matches) {
    for (const [i, op] of ops.entries()) applyOp(obj as unknown as JsonObject, checkOp(op, `${file}[${i}]`), `${file}[${i}]`);
  }
}

function checkOp(op: unknown, where: string): PatchOp {
  if (!isObject(op)) throw new KustomizeError(`${where}: not a mapping`);
  only(op, ['op', 'path', 'value'], where);
  if (op.op !== 'add' && op.op !== 'replace' && op.op !== 'remove') throw new KustomizeError(`${where}: op ${String(op.op)} is not supported (add, replace, remove)`);
  if (typeof op.path !== 'string' || !op.path.startsWith('/')) throw new KustomizeError(`${where}: path must be a JSON pointer below the root`);
  if (op.op !== 'remove' && !('value' in op)) throw new KustomizeError(`${where}: ${op.op} needs a value`);
  return op as unknown as PatchOp;
}

/** RFC 6902 add, replace and remove at an RFC 6901 pointer. */
function applyOp(doc: JsonObject, op: PatchOp, where: string): void {
  const tokens = op.path
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = tokens.pop()!;
  let parent: Json = doc;
  for (const t of tokens) {
    const next: Json | undefined = Array.isArray(parent) ? parent[arrayIndex(parent, t, false, where)] : isObject(parent) ? parent[t] : undefined;
    if (next === undefined || next === null || typeof next !== 'object') throw new KustomizeError(`${where}: ${op.path}: nothing at "${t}"`);
    parent = next;
  }
  const value = structuredClone(op.value) as Json;
  if (Array.isArray(parent)) {
    const i = arrayIndex(parent, last, op.op === 'add', where);
    if (op.op === 'add') parent.splice(i, 0, value);
    else if (op.op === 'replace') parent[i] = value;
    else parent.splice(i, 1);
  } else if (isObject(parent)) {
    if (op.op !== 'add' && !(last in parent)) throw new KustomizeError(`${where}: ${op.op} ${op.path}: no such member`);
    if (op.op === 'remove') delete parent[last];
    else parent[last] = value;
  } else {
    throw new KustomizeError(`${where}: ${op.path}: the parent is not an object or array`);
  }
}

function arrayIndex(array: Json[], token: string, adding: boolean, where: string): number {
  if (adding && token === '-') return array.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new KustomizeError(`${where}: "${token}" is not an array index`);
  const i = Number(token);
  if (i > array.length || (!adding && i === array.length)) throw new KustomizeError(`${where}: index ${i} is out of range`);
  return i;
}

function addLabels(loaded: Loaded[], entry: unknown, where: string): void {
  if (!isObject(entry)) throw new KustomizeError(`${where}: not a mapping`);
  only(entry, ['pairs', 'includeSelectors', 'includeTemplates'], where);
  if (entry.includeSelectors === true) throw new KustomizeError(`${where}: includeSelectors: true is not supported (selectors are immutable once applied)`);
  if (!isObject(entry.pairs)) throw new KustomizeError(`${where}: pairs must be a mapping`);
  const pairs = Object.fromEntries(Object.entries(entry.pairs).map(([key, v]) => [key, String(v)]));
  const label = (meta: JsonObject) => {
    meta.labels = { ...(isObject(meta.labels) ? meta.labels : {}), ...pairs };
  };
  for (const { obj, origin } of loaded) {
    label(obj.metadata as JsonObject);
    if (entry.includeTemplates !== true || !kindInfo(obj, origin).podTemplate) continue;
    const spec = (obj.spec ??= {}) as JsonObject;
    const template = (spec.template ??= {}) as JsonObject;
    label((template.metadata ??= {}) as JsonObject);
    if (obj.kind === 'StatefulSet') for (const vct of (spec.volumeClaimTemplates ?? []) as JsonObject[]) label((vct.metadata ??= {}) as JsonObject);
  }
}

function setImage(loaded: Loaded[], entry: unknown, where: string): void {
  if (!isObject(entry)) throw new KustomizeError(`${where}: not a mapping`);
  only(entry, ['name', 'newName', 'newTag'], where);
  const name = str(entry.name, where, 'name');
  const newName = entry.newName === undefined ? undefined : str(entry.newName, where, 'newName');
  const newTag = entry.newTag === undefined ? undefined : String(entry.newTag);
  let hits = 0;
  for (const { obj, origin } of loaded) {
    if (!kindInfo(obj, origin).podTemplate) continue;
    const pod = ((obj.spec as JsonObject | undefined)?.template as JsonObject | undefined)?.spec as JsonObject | undefined;
    for (const c of [...((pod?.containers ?? []) as JsonObject[]), ...((pod?.initContainers ?? []) as JsonObject[])]) {
      if (typeof c.image !== 'string') continue;
      const ref = splitImage(c.image);
      if (ref.name !== name) continue;
      // A new tag replaces a digest too, as kustomize does.
      c.image = (newName ?? ref.name) + (newTag !== undefined ? `:${newTag}` : ref.suffix);
      hits++;
    }
  }
  if (!hits) throw new KustomizeError(`${where}: no container uses the image ${name}`);
}

/** "registry:5000/repo:tag@sha256:..." → name "registry:5000/repo", suffix ":tag@sha256:...". */
function splitImage(image: string): { name: string; suffix: string } {
  const at = image.indexOf('@');
  const beforeDigest = at < 0 ? image : image.slice(0, at);
  const colon = beforeDigest.lastIndexOf(':');
  const end = colon > beforeDigest.lastIndexOf('/') ? colon : beforeDigest.length;
  return { name: image.slice(0, end), suffix: image.slice(end) };
}

function kindInfo(obj: KubeObject, origin: string): { namespaced: boolean; podTemplate?: boolean } {
  const info = KINDS[`${obj.apiVersion}/${obj.kind}`];
  if (!info) throw new KustomizeError(`${origin}: ${obj.apiVersion} ${obj.kind} is not in test/unit/helpers/kustomize.ts's KINDS (its scope and pod template decide how it is transformed): add it there`);
  return info;
}

function objectId(obj: KubeObject): string {
  const group = obj.apiVersion.includes('/') ? obj.apiVersion.split('/')[0] : '';
  return `${group}/${obj.kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
}

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(obj: JsonObject, keys: string[], where: string): void {
  for (const key of Object.keys(obj)) if (!keys.includes(key)) throw new KustomizeError(`${where}: "${key}" is not supported (${keys.join(', ')})`);
}

function list(v: unknown, file: string, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new KustomizeError(`${file}: ${field} must be a list`);
  return v;
}

function str(v: unknown, where: string, field: string): string {
  if (typeof v !== 'string' || !v) throw new KustomizeError(`${where}: ${field} must be a non-empty string`);
  return v;
}
