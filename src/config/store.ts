// SPDX-License-Identifier: Apache-2.0
/**
 * The mesh's truth in Redis: atomic versioned writes with a change stream,
 * reads, snapshots, and the agents' reports.
 */
import type { Redis } from 'ioredis';
import { KmError } from '../errors.ts';
import { type Keys, field, meshKeys, parseField } from './keys.ts';
import type { Kind, Ref } from './model/kinds.ts';
import { type MeshObject, keyOf } from './objects.ts';
import { SNAPSHOT, WRITE } from './scripts.ts';

export interface StoredObject {
  version: number;
  object: MeshObject;
}

export interface Snapshot {
  version: number;
  /** The stream id of the last change included. */
  lastId: string;
  objects: Map<string, StoredObject>;
}

export interface ChangeEntry {
  id: string;
  version: number;
  kind: Kind;
  key: string;
  op: 'put' | 'delete';
  /** The object's JSON as written; parsed only by the agents that keep it. */
  json?: string;
}

export function entryObject(e: ChangeEntry): MeshObject | undefined {
  return e.json ? { ...(JSON.parse(e.json) as MeshObject), version: e.version } : undefined;
}

export type WriteOp = { op: 'put'; object: MeshObject } | { op: 'delete'; ref: Ref };

export interface StoreOptions {
  prefix?: string;
  mesh?: string;
  /** Approximate stream length kept for agents to catch up from. */
  streamMaxLen?: number;
}

type ScriptedRedis = Redis & {
  kmWrite(k1: string, k2: string, k3: string, ...args: Array<string | number>): Promise<number[]>;
  kmSnapshot(k1: string, k2: string, k3: string, all: string): Promise<Array<string | number>>;
};

/** Wraps a Redis failure in KM_ERR_REDIS with what to check. */
export function redisError(err: unknown, what: string): KmError {
  return new KmError('KM_ERR_REDIS', `${what}: ${(err as Error).message} (is Redis reachable? check REDIS_URL / --redis)`, { cause: err });
}

/** The body stored for an object: everything but the store-assigned version. */
export function storedJson(o: MeshObject): string {
  const { version: _v, ...rest } = o;
  return JSON.stringify(rest);
}

export class MeshStore {
  readonly keys: Keys;
  /** The connection (for readers of other keys of this mesh, like agent reports). */
  readonly redis: ScriptedRedis;
  private readonly maxLen: number;

  constructor(redis: Redis, options: StoreOptions = {}) {
    this.keys = meshKeys(options.prefix, options.mesh);
    this.maxLen = options.streamMaxLen ?? 10_000;
    this.redis = redis as ScriptedRedis;
    if (!('kmWrite' in redis)) {
      redis.defineCommand('kmWrite', { numberOfKeys: 3, lua: WRITE });
      redis.defineCommand('kmSnapshot', { numberOfKeys: 3, lua: SNAPSHOT });
    }
  }

  /**
   * Applies a batch atomically; each op gets its own version and stream entry.
   * With `expectedVersion` (the mesh version the caller read before deciding
   * on the batch) it writes only if nothing was written since, and otherwise
   * throws KM_ERR_CONFLICT, having written nothing.
   */
  async write(ops: WriteOp[], options: { expectedVersion?: number } = {}): Promise<number[]> {
    if (ops.length === 0) return [];
    const args: Array<string | number> = [this.maxLen, options.expectedVersion ?? ''];
    for (const op of ops) {
      if (op.op === 'put') args.push('put', field(op.object.kind, keyOf(op.object)), storedJson(op.object));
      else args.push('delete', field(op.ref.kind, op.ref.key), '');
    }
    try {
      return await this.redis.kmWrite(this.keys.version, this.keys.objects, this.keys.stream, ...args);
    } catch (err) {
      const c = /CONFLICT (\d+)/.exec((err as Error).message);
      if (c) throw new KmError('KM_ERR_CONFLICT', `the mesh is at version ${c[1]}, not ${options.expectedVersion}: another write came in since it was read; nothing was written`, { cause: err });
      const m = /NOTFOUND (\S+)/.exec((err as Error).message);
      if (m) throw new KmError('KM_ERR_NOT_FOUND', `${m[1]} does not exist; nothing was deleted`, { cause: err });
      throw redisError(err, 'writing to the mesh store');
    }
  }

  async get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    let raw: string | null;
    try {
      raw = await this.redis.hget(this.keys.objects, field(kind, key));
    } catch (err) {
      throw redisError(err, 'reading the mesh store');
    }
    return raw ? parseStored(raw) : undefined;
  }

  async exists(ref: Ref): Promise<boolean> {
    try {
      return (await this.redis.hexists(this.keys.objects, field(ref.kind, ref.key))) === 1;
    } catch (err) {
      throw redisError(err, 'reading the mesh store');
    }
  }

  /** Every object, or every object of one kind, sorted by key. */
  async list(kind?: Kind): Promise<StoredObject[]> {
    const snap = await this.snapshot();
    return [...snap.objects.entries()]
      .filter(([f]) => !kind || parseField(f).kind === kind)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([, v]) => v);
  }

  async version(): Promise<number> {
    try {
      return Number((await this.redis.get(this.keys.version)) ?? 0);
    } catch (err) {
      throw redisError(err, 'reading the mesh version');
    }
  }

  /** A consistent view: version, stream position and (unless heads only) every object. */
  async snapshot(options: { objects?: boolean } = {}): Promise<Snapshot> {
    let reply: Array<string | number>;
    try {
      reply = await this.redis.kmSnapshot(this.keys.version, this.keys.objects, this.keys.stream, options.objects === false ? '0' : '1');
    } catch (err) {
      throw redisError(err, 'taking a snapshot of the mesh store');
    }
    const objects = new Map<string, StoredObject>();
    for (let i = 2; i + 1 < reply.length; i += 2) objects.set(String(reply[i]), parseStored(String(reply[i + 1])));
    return { version: Number(reply[0]), lastId: String(reply[1]), objects };
  }
}

export function parseStored(raw: string): StoredObject {
  const parsed = JSON.parse(raw) as { version: number; object: MeshObject };
  return { version: parsed.version, object: { ...parsed.object, version: parsed.version } };
}

/** Decodes XREAD's reply for one stream. */
export function parseEntries(reply: Array<[string, string[]]>): ChangeEntry[] {
  return reply.map(([id, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
    const version = Number(f.version);
    const entry: ChangeEntry = { id, version, kind: f.kind as Kind, key: f.key!, op: f.op === 'delete' ? 'delete' : 'put' };
    if (entry.op === 'put' && f.obj) entry.json = f.obj;
    return entry;
  });
}
