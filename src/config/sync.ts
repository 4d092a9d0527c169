// SPDX-License-Identifier: Apache-2.0
/**
 * An agent's view of the mesh, kept in step with Redis: a consistent
 * snapshot, then the change stream from the last applied entry, on its own
 * connection. Anything that breaks the chain (a trimmed stream, a version
 * gap, a version that goes backwards) triggers a full resync. Bursts are
 * coalesced into one 'change' event per few milliseconds; the last applied
 * view is kept on disk and served while Redis is away.
 */
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { type Logger, silentLogger } from '../log.ts';
import { type CachedSnapshot, readCache, setAside, writeCache } from './cache.ts';
import { field } from './keys.ts';
import type { Kind } from './model/kinds.ts';
import { type RedisConfig, connectExplained, connectRedis } from './redis.ts';
import { type ChangeEntry, MeshStore, type StoredObject, entryObject, parseEntries } from './store.ts';

export interface AgentSyncOptions {
  node: string;
  mode?: string;
  redis: RedisConfig;
  /** Where the last applied snapshot is kept; none = no disk cache. */
  cachePath?: string;
  /** Keep only objects asked for with want() (memory follows use, not mesh size). */
  lazy?: boolean;
  coalesceMs?: number;
  blockMs?: number;
  reportIntervalMs?: number;
  /** Reports after changes are at least this far apart. */
  reportMinGapMs?: number;
  aliveTtlMs?: number;
  persistIntervalMs?: number;
  logger?: Logger;
}

export type SyncState = 'starting' | 'cached' | 'synced' | 'offline' | 'stopped';

export interface SyncCounters {
  fullSyncs: number;
  entriesApplied: number;
  entriesSkipped: number;
  resyncGap: number;
  resyncBackwards: number;
  errors: number;
}

export interface MeshView {
  version: number;
  objects: ReadonlyMap<string, StoredObject>;
}

export class AgentSync extends EventEmitter {
  readonly node: string;
  readonly mode: string;
  state: SyncState = 'starting';
  appliedVersion = 0;
  lastId = '0-0';
  lastError: string | undefined;
  /** The applied version the last successful report carried. */
  reportedVersion = -1;
  readonly counters: SyncCounters = { fullSyncs: 0, entriesApplied: 0, entriesSkipped: 0, resyncGap: 0, resyncBackwards: 0, errors: 0 };

  private readonly opts: Required<Omit<AgentSyncOptions, 'cachePath' | 'logger' | 'redis'>> & Pick<AgentSyncOptions, 'cachePath'>;
  private readonly log: Logger;
  private readonly cmd: Redis;
  private readonly stream: Redis;
  private readonly store: MeshStore;
  private readonly mesh: string;
  private view = new Map<string, StoredObject>();
  /** Lazy mode: the fields this agent uses. */
  private readonly warm = new Set<string>();
  /** Lazy mode: the version of the last stream entry seen per warm field. */
  private readonly touched = new Map<string, number>();
  /** Bumped by every full sync, so an answer fetched before one is recognised. */
  private generation = 0;
  private needFull = true;
  /**
   * Whether there is a view worth keeping on disk: one loaded from the cache or
   * from Redis. Until then the view is only the empty start, and writing it
   * would replace a cache (or its absence) with an empty version-0 mesh that
   * the next start would serve as if it were the mesh.
   */
  private loaded = false;
  /** False when a damaged cache could not be moved aside: it is not overwritten either. */
  private cacheWritable = true;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private coalesceTimer: NodeJS.Timeout | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private reportTimer: NodeJS.Timeout | undefined;
  private reportSoon: NodeJS.Timeout | undefined;
  private lastReportAt = 0;
  private readonly startedAt = Date.now();

  constructor(options: AgentSyncOptions) {
    super();
    this.node = options.node;
    this.mode = options.mode ?? 'ebpf';
    this.opts = {
      node: options.node,
      mode: this.mode,
      lazy: options.lazy ?? false,
      coalesceMs: options.coalesceMs ?? 5,
      blockMs: options.blockMs ?? 2000,
      reportIntervalMs: options.reportIntervalMs ?? 2000,
      reportMinGapMs: options.reportMinGapMs ?? 500,
      aliveTtlMs: options.aliveTtlMs ?? 10_000,
      persistIntervalMs: options.persistIntervalMs ?? 1000,
      cachePath: options.cachePath,
    };
    this.log = options.logger ?? silentLogger;
    this.mesh = options.redis.mesh ?? 'mesh';
    this.cmd = connectRedis(options.redis, `kernmesh-agent-${this.node}`);
    // The stream connection blocks in XREAD: it never shares a socket with anything else.
    this.stream = connectRedis(options.redis, `kernmesh-agent-${this.node}-stream`);
    for (const c of [this.cmd, this.stream]) c.on('error', (err: Error) => this.noteError(err));
    this.store = new MeshStore(this.cmd, { ...(options.redis.prefix ? { prefix: options.redis.prefix } : {}), mesh: this.mesh });
  }

  /** The current view. Treat it as read-only; it changes between 'change' events. */
  current(): MeshView {
    return { version: this.appliedVersion, objects: this.view };
  }

  get(kind: Kind, key: string): StoredObject | undefined {
    return this.view.get(field(kind, key));
  }

  /**
   * Lazy mode: the object, fetched from Redis on first use and kept in step
   * from then on. (Eager mode already holds everything.)
   */
  async want(kind: Kind, key: string): Promise<StoredObject | undefined> {
    const f = field(kind, key);
    this.warm.add(f);
    const have = this.view.get(f);
    if (have || !this.opts.lazy) return have;
    const generation = this.generation;
    const fetched = await this.store.get(kind, key);
    // Meanwhile the stream may have changed or deleted it, or a resync replaced the view:
    // then the fetched copy is older than what the view says, and is dropped.
    if (generation !== this.generation || (this.touched.get(f) ?? -1) >= (fetched?.version ?? 0)) return this.view.get(f);
    const now = this.view.get(f);
    if (fetched && (!now || now.version < fetched.version)) this.view.set(f, fetched);
    return this.view.get(f);
  }

  /**
   * Starts: serves the disk snapshot at once if there is one, then follows
   * Redis in the background. Resolves when there is a view to serve: from
   * Redis, from disk, or (neither) empty but trying.
   */
  async start(): Promise<void> {
    const cached = this.loadCache();
    if (cached) {
      this.loaded = true;
      this.view = cached.objects;
      this.appliedVersion = cached.version;
      this.lastId = cached.lastId;
      this.needFull = false;
      this.state = 'cached';
      this.log.info({ version: cached.version }, 'serving the mesh snapshot from disk until Redis answers');
      this.emitChange();
    }
    const firstSync = new Promise<void>((resolve) => {
      this.once('synced', () => resolve());
      this.once('offline', () => resolve());
    });
    this.loop = this.run();
    this.reportTimer = setInterval(() => void this.report(), this.opts.reportIntervalMs);
    this.reportTimer.unref();
    await firstSync;
  }

  /**
   * Stops. With forget, this node's report is removed from Redis first (an
   * agent leaving for good: uninstalled, or its node drained), so status does
   * not list it as NOT CONNECTED forever; a restart reports again at once.
   */
  async stop(options: { forget?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    clearInterval(this.reportTimer);
    clearTimeout(this.coalesceTimer);
    clearTimeout(this.persistTimer);
    clearTimeout(this.reportSoon);
    if (options.forget && this.cmd.status === 'ready') {
      await this.cmd.multi().hdel(this.store.keys.agents, this.node).del(this.store.keys.alive(this.node)).exec().catch(() => {});
    }
    this.stream.disconnect();
    await this.loop?.catch(() => {});
    // Whatever was applied is what the next start serves from, pending timers or not
    // (persistNow writes nothing when no mesh was ever loaded: an empty start must not replace the cache).
    this.persistNow();
    this.cmd.disconnect();
  }

  private noteError(err: Error): void {
    this.lastError = err.message;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.stream.status === 'wait' || this.stream.status === 'end') await connectExplained(this.stream);
        if (this.cmd.status === 'wait' || this.cmd.status === 'end') await connectExplained(this.cmd);
        if (this.needFull) await this.fullSync();
        // Catching up (after a start from disk, or a reconnect) reads without blocking,
        // so that "synced" means caught up now, not after the next change.
        const catchingUp = this.state !== 'synced';
        const reply = (
          catchingUp
            ? await this.stream.xread('COUNT', 1000, 'STREAMS', this.store.keys.stream, this.lastId)
            : await this.stream.xread('COUNT', 1000, 'BLOCK', this.opts.blockMs, 'STREAMS', this.store.keys.stream, this.lastId)
        ) as Array<[string, Array<[string, string[]]>]> | null;
        failures = 0;
        const entries = reply ? parseEntries(reply[0]![1]) : [];
        if (entries.length) this.applyEntries(entries);
        else if (!catchingUp) await this.probe();
        if (catchingUp && entries.length < 1000 && !this.needFull) this.markSynced();
      } catch (err) {
        if (this.stopped) break;
        failures++;
        this.counters.errors++;
        this.noteError(err as Error);
        if (this.state !== 'offline') {
          this.state = 'offline';
          this.log.warn({ err }, 'Redis unreachable: serving the last applied mesh version');
          this.emit('offline');
        }
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** Math.min(failures, 6), 2000)));
      }
    }
  }

  private markSynced(): void {
    this.state = 'synced';
    this.lastError = undefined;
    this.emit('synced');
    void this.report();
  }

  private async fullSync(): Promise<void> {
    const snap = await this.store.snapshot({ objects: !this.opts.lazy });
    if (snap.version < this.appliedVersion) this.log.warn({ from: this.appliedVersion, to: snap.version }, 'the mesh version went backwards (Redis restored?): following Redis');
    let objects = snap.objects;
    if (this.opts.lazy) {
      objects = new Map();
      for (const f of this.warm) {
        const slash = f.indexOf('/');
        // Possibly newer than the snapshot: kept (the stream's older entries for it are skipped by version).
        const got = await this.store.get(f.slice(0, slash) as Kind, f.slice(slash + 1));
        if (got) objects.set(f, got);
      }
    }
    this.view = objects;
    this.appliedVersion = snap.version;
    this.lastId = snap.lastId;
    this.needFull = false;
    this.loaded = true;
    this.generation++;
    this.counters.fullSyncs++;
    this.log.info({ version: snap.version, objects: objects.size }, 'full sync');
    this.scheduleChange();
    this.emit('applied', this.appliedVersion, []);
  }

  /** An idle stream: make sure Redis has not moved on (or back) without us. */
  private async probe(): Promise<void> {
    const head = await this.store.snapshot({ objects: false });
    if (head.version < this.appliedVersion) {
      this.counters.resyncBackwards++;
      this.needFull = true;
    } else if (head.version > this.appliedVersion && compareIds(head.lastId, this.lastId) <= 0) {
      // Redis is ahead, yet its stream has nothing after our position: it was replaced or trimmed.
      this.counters.resyncGap++;
      this.needFull = true;
    }
  }

  private applyEntries(entries: ChangeEntry[]): void {
    const applied: ChangeEntry[] = [];
    let viewChanged = false;
    for (const e of entries) {
      if (e.version <= this.appliedVersion) {
        // Stream ids only grow, so an old version after our position means Redis went back in time.
        this.counters.resyncBackwards++;
        this.needFull = true;
        break;
      }
      if (e.version !== this.appliedVersion + 1) {
        // Entries we never saw were trimmed away (or the stream was replaced).
        this.counters.resyncGap++;
        this.needFull = true;
        break;
      }
      const f = field(e.kind, e.key);
      const have = this.view.get(f);
      if ((!this.opts.lazy || this.warm.has(f)) && !(have && have.version >= e.version)) {
        if (this.opts.lazy) this.touched.set(f, e.version);
        const object = e.op === 'put' ? entryObject(e) : undefined;
        if (object) this.view.set(f, { version: e.version, object });
        else this.view.delete(f);
        this.counters.entriesApplied++;
        viewChanged = true;
      } else {
        this.counters.entriesSkipped++;
      }
      this.appliedVersion = e.version;
      this.lastId = e.id;
      applied.push(e);
    }
    if (applied.length === 0) return;
    // A lazy agent that only moved its version past others' changes has nothing to rebuild.
    if (viewChanged) this.scheduleChange();
    else this.schedulePersist();
    this.emit('applied', this.appliedVersion, applied);
  }

  /** Many entries in a burst become one 'change' a few milliseconds later. */
  private scheduleChange(): void {
    if (this.coalesceTimer) return;
    this.coalesceTimer = setTimeout(() => {
      this.coalesceTimer = undefined;
      this.emitChange();
    }, this.opts.coalesceMs);
  }

  private emitChange(): void {
    this.emit('change', this.current());
    this.schedulePersist();
    this.scheduleReport();
  }

  /**
   * A change is reported soon, but at most once per reportMinGapMs: with
   * thousands of agents, a report per change would double Redis's load.
   */
  private scheduleReport(): void {
    if (this.reportSoon) return;
    const wait = Math.max(0, this.lastReportAt + this.opts.reportMinGapMs - Date.now());
    this.reportSoon = setTimeout(() => {
      this.reportSoon = undefined;
      void this.report();
    }, wait);
    this.reportSoon.unref();
  }

  private schedulePersist(): void {
    if (!this.opts.cachePath || this.persistTimer) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      this.persistNow();
    }, this.opts.persistIntervalMs);
    this.persistTimer.unref();
  }

  /** The disk snapshot, if there is a usable one; a damaged one is said and moved aside, never lost. */
  private loadCache(): CachedSnapshot | undefined {
    const path = this.opts.cachePath;
    if (!path) return undefined;
    const read = readCache(path, this.mesh);
    // Version 0 is the empty mesh: nothing to serve (agents before this check wrote one when stopped before any sync).
    if ('snapshot' in read) return read.snapshot.version > 0 ? read.snapshot : undefined;
    if ('missing' in read) return undefined;
    try {
      const aside = setAside(path);
      this.log.warn({ path, aside, problem: read.damaged }, `the mesh snapshot on disk at ${path} cannot be used (${read.damaged}): moved it to ${aside}; starting without it`);
    } catch (err) {
      this.cacheWritable = false;
      this.log.error({ path, problem: read.damaged, err }, `the mesh snapshot on disk at ${path} cannot be used (${read.damaged}) nor moved aside: starting without it, and leaving it as it is (no snapshot is written this run)`);
    }
    return undefined;
  }

  private persistNow(): void {
    if (!this.opts.cachePath || !this.loaded || !this.cacheWritable) return;
    try {
      writeCache(this.opts.cachePath, { mesh: this.mesh, version: this.appliedVersion, lastId: this.lastId, objects: this.view });
    } catch (err) {
      this.noteError(err as Error);
      this.log.error({ err }, 'could not write the mesh snapshot to disk');
    }
  }

  /** Tells `kernmesh status` how this agent is doing; a missing alive key = NOT CONNECTED. */
  /** What the agent adds to every report (datapath, proxy, workloads): set by its owner. */
  reportExtra: () => Record<string, unknown> = () => ({});

  async report(extra: Record<string, unknown> = {}): Promise<void> {
    if (this.cmd.status !== 'ready') return;
    this.lastReportAt = Date.now();
    let provided: Record<string, unknown> = {};
    try {
      provided = this.reportExtra();
    } catch (err) {
      this.noteError(err as Error);
    }
    const body = JSON.stringify({
      node: this.node,
      mode: this.mode,
      appliedVersion: this.appliedVersion,
      state: this.state,
      lastError: this.lastError ?? null,
      counters: this.counters,
      startedAt: this.startedAt,
      reportedAt: Date.now(),
      ...provided,
      ...extra,
    });
    try {
      const version = this.appliedVersion;
      await this.cmd.multi().hset(this.store.keys.agents, this.node, body).set(this.store.keys.alive(this.node), '1', 'PX', this.opts.aliveTtlMs).exec();
      this.reportedVersion = version;
      this.emit('reported', version);
    } catch (err) {
      this.noteError(err as Error);
    }
  }
}

/** Orders stream ids ("ms-seq"). */
export function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}
