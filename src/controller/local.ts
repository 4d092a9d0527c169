// SPDX-License-Identifier: Apache-2.0
/**
 * The controller in local-registry mode (no Kubernetes): a YAML file lists
 * services and their endpoints; the leader writes them to the mesh as
 * Service and Endpoints objects (only what changed, and deletes what went),
 * and follows the file as it is edited.
 */
import { readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { FSWatcher } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { KmError } from '../errors.ts';
import { dnsLabel, protocol } from '../config/model/common.ts';
import type { MeshObject } from '../config/objects.ts';
import type { MeshStore } from '../config/store.ts';
import { type Issue, checkClaims, parseSource } from '../config/validate.ts';
import { RedisLeader } from './leader.ts';
import { OwnedSync } from './owned.ts';

const Registry = z
  .object({
    services: z
      .array(
        z
          .object({
            // A label, not any object name: it is the first label of the service's host name.
            name: dnsLabel,
            namespace: z.string().min(1).default('default'),
            addresses: z.array(z.string()).default([]),
            ports: z.array(z.object({ port: z.number().int(), targetPort: z.number().int().optional(), protocol: protocol.optional() }).strict()).min(1),
            endpoints: z.array(z.object({ address: z.string(), port: z.number().int().optional(), labels: z.record(z.string(), z.string()).default({}), node: z.string().optional(), zone: z.string().optional(), weight: z.number().int().default(1), ready: z.boolean().default(true) }).strict()).default([]),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();

export function readRegistry(path: string): MeshObject[] {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new KmError('KM_ERR_INVALID_CONFIG', `cannot read the registry ${path}: ${(err as Error).message}`, { cause: err });
  }
  // An empty file is more likely a half-written one than "no services": refuse it.
  if (raw === null || raw === undefined) throw new KmError('KM_ERR_INVALID_CONFIG', `${path} is empty: write "services: []" to remove every service`);
  const r = Registry.safeParse(raw);
  if (!r.success) {
    // Every problem, each at its place in the file ("(root)" for the top level, where an unknown key is said).
    const problems = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new KmError('KM_ERR_INVALID_CONFIG', `${path}: ${problems.join('; ')}; nothing was written`, { cause: r.error });
  }
  const objects = r.data.services.flatMap((s): MeshObject[] => [
    { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name: s.name, namespace: s.namespace }, spec: { hosts: [`${s.name}.${s.namespace}.svc.cluster.local`], addresses: s.addresses, ports: s.ports } },
    { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name: s.name, namespace: s.namespace }, spec: { endpoints: s.endpoints } },
  ]);
  checkAsApplyWould(objects, path);
  return objects;
}

/**
 * The registry writes to the mesh past `kernmesh apply`, so its objects get
 * the same check apply gives (agents trust what the mesh holds: an endpoint
 * of weight 0, say, is no endpoint at all). Each problem is named by where it
 * is in the registry, not in the objects made from it.
 */
function checkAsApplyWould(objects: MeshObject[], path: string): void {
  const parsed = parseSource(objects.map((o) => JSON.stringify(o)).join('\n---\n'), path);
  // Two registry services on one address:port (or host) cannot both be reached, as apply would say.
  const issues = parsed.issues.length ? parsed.issues : checkClaims(parsed.objects, []);
  // The host is made from the name and namespace: it is wrong only when the namespace is, which is said already.
  const lines = issues.filter((i) => !/^spec\.hosts\b/.test(i.path)).map((i) => `${registryPath(i)}: ${i.message.replace(/ in .* document (\d+)$/, (_m, d: string) => ` as ${serviceAt(Number(d))}`)}`);
  if (lines.length === 0) return;
  // A Service and its Endpoints share name and namespace: one problem there is said once.
  throw new KmError('KM_ERR_INVALID_CONFIG', `${path}: ${[...new Set(lines)].join('; ')}; nothing was written`);
}

/** One document per object, in order: service N is documents 2N+1 (its Service) and 2N+2 (its Endpoints). */
function serviceAt(document: number): string {
  return `services.${Math.floor((document - 1) / 2)}`;
}

/** "services.N.<field>": the objects' metadata and spec fields are the registry's own. */
function registryPath(i: Issue): string {
  return [serviceAt(i.document), i.path.replace(/^(metadata|spec)\.?/, '')].filter(Boolean).join('.');
}

export class LocalController {
  private readonly owned: OwnedSync;
  private readonly path: string;
  readonly leader: RedisLeader;
  private watcher: FSWatcher | undefined;
  private pending: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private readonly resyncMs: number;
  private running: Promise<void> = Promise.resolve();
  /** The next pass reads Redis first rather than trust what this replica last wrote. */
  private reread = false;
  syncs = 0;
  lastError: string | undefined;

  constructor(store: MeshStore, path: string, identity: string, options: { resyncMs?: number } = {}) {
    this.owned = new OwnedSync(store, 'local-registry');
    this.path = path;
    this.resyncMs = options.resyncMs ?? 10_000;
    this.leader = new RedisLeader(store.redis, store.keys.controllerLeader, identity);
    // Writes only while leading; each new term (a first one, or the key taken back after Redis lost it)
    // means a full pass from what Redis holds.
    this.leader.onChange = (leading) => {
      this.owned.reset();
      if (leading) void this.syncNow({ reread: true });
    };
  }

  /** Checks the registry first: a controller that cannot read it does not take the lease. */
  start(): void {
    readRegistry(this.path);
    // The directory is watched, not the file: editors replace files by renaming.
    const name = basename(this.path);
    this.watcher = watch(dirname(this.path), (_event, file) => {
      if (file !== null && file !== name) return;
      clearTimeout(this.pending);
      this.pending = setTimeout(() => void this.syncNow(), 50);
    });
    // And a periodic pass, reading Redis afresh: it retries a failed sync (Redis away) without waiting for an
    // edit, and repairs what went behind this replica's back (a `kernmesh delete`, Redis flushed or restarted empty).
    this.resync = setInterval(() => void this.syncNow({ reread: true }), this.resyncMs);
    this.resync.unref();
    this.leader.start();
  }

  /** Makes the mesh's registry-owned Services and Endpoints equal to the file. Passes never overlap. */
  syncNow(options: { reread?: boolean } = {}): Promise<void> {
    if (options.reread) this.reread = true;
    this.running = this.running.then(() => this.pass());
    return this.running;
  }

  private async pass(): Promise<void> {
    if (!this.leader.leading) return;
    // Reset here, not when asked: a pass already under way when the ask came would otherwise
    // put back its own picture of Redis as it finished.
    if (this.reread) {
      this.reread = false;
      this.owned.reset();
    }
    try {
      // Leadership is checked again right before writing: a controller that lost it writes nothing.
      await this.owned.sync(readRegistry(this.path), () => this.leader.tick());
      this.syncs++;
      this.lastError = undefined;
    } catch (err) {
      this.lastError = (err as Error).message;
      console.error(`kernmesh controller: ${this.lastError}`);
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.pending);
    clearInterval(this.resync);
    this.watcher?.close();
    await this.leader.stop();
  }
}
