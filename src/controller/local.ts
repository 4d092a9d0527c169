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
import type { MeshObject } from '../config/objects.ts';
import type { MeshStore } from '../config/store.ts';
import { RedisLeader } from './leader.ts';
import { OwnedSync } from './owned.ts';

const Registry = z
  .object({
    services: z
      .array(
        z
          .object({
            name: z.string().min(1),
            namespace: z.string().min(1).default('default'),
            addresses: z.array(z.string()).default([]),
            ports: z.array(z.object({ port: z.number().int(), targetPort: z.number().int().optional(), protocol: z.enum(['http', 'http2', 'grpc', 'tcp', 'tls']).default('http') }).strict()).min(1),
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
  if (!r.success) throw new KmError('KM_ERR_INVALID_CONFIG', `${path}: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`, { cause: r.error });
  return r.data.services.flatMap((s) => [
    { apiVersion: 'kernmesh.io/v1', kind: 'Service', metadata: { name: s.name, namespace: s.namespace }, spec: { hosts: [`${s.name}.${s.namespace}.svc.cluster.local`], addresses: s.addresses, ports: s.ports } },
    { apiVersion: 'kernmesh.io/v1', kind: 'Endpoints', metadata: { name: s.name, namespace: s.namespace }, spec: { endpoints: s.endpoints } },
  ]);
}

export class LocalController {
  private readonly owned: OwnedSync;
  private readonly path: string;
  readonly leader: RedisLeader;
  private watcher: FSWatcher | undefined;
  private pending: NodeJS.Timeout | undefined;
  syncs = 0;
  lastError: string | undefined;

  constructor(store: MeshStore, path: string, identity: string) {
    this.owned = new OwnedSync(store, 'local-registry');
    this.path = path;
    this.leader = new RedisLeader(store.redis, store.keys.controllerLeader, identity);
    // Writes only while leading; becoming leader means a full pass from what Redis holds.
    this.leader.onChange = (leading) => {
      this.owned.reset();
      if (leading) void this.syncNow();
    };
  }

  private resync: NodeJS.Timeout | undefined;

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
    // And a periodic pass, so a failed sync (Redis away) is retried without waiting for an edit.
    this.resync = setInterval(() => void this.syncNow(), 10_000);
    this.resync.unref();
    this.leader.start();
  }

  /** Makes the mesh's registry-owned Services and Endpoints equal to the file. */
  async syncNow(): Promise<void> {
    if (!this.leader.leading) return;
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
