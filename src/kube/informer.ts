// SPDX-License-Identifier: Apache-2.0
/**
 * A list/watch cache over @kubernetes/client-node's ListWatch that never
 * stops silently. The library already relists on 410 Gone and resumes a
 * dropped stream from the last resourceVersion; on any other error (the API
 * server unreachable, a 500, a 403) it calls its error callbacks and stops.
 * Here every such error is logged and the watch is started again after an
 * exponential backoff with jitter, resuming from the last resourceVersion
 * (or relisting, if that is gone). Watches ask for BOOKMARK events so a
 * quiet resource still advances its resourceVersion and a reconnect rarely
 * has to relist.
 */
import { type KubeConfig, type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

type ListFn<T> = () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>;

export interface InformerOptions<T> {
  /** For logs and status: "pods", "namespaces"... */
  name: string;
  kc: KubeConfig;
  /** The collection's API path, e.g. /api/v1/pods. */
  path: string;
  list: ListFn<T>;
  fieldSelector?: string;
  labelSelector?: string;
  log: Logger;
  backoff?: { initialMs?: number; maxMs?: number };
}

/**
 * Watch with allowWatchBookmarks=true (the library's own does not ask), and
 * none at all once the informer is stopped: ListWatch does not look at its
 * stopped flag again after a relist or a reconnect delay, so a stop() in
 * that window would otherwise open a fresh watch nobody listens to.
 */
class BookmarkWatch extends Watch {
  private readonly stopped: () => boolean;

  constructor(kc: KubeConfig, stopped: () => boolean) {
    super(kc);
    this.stopped = stopped;
  }

  override watch(path: string, query: Record<string, unknown>, callback: (phase: string, obj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    if (this.stopped()) {
      const c = new AbortController();
      c.abort();
      return Promise.resolve(c);
    }
    return super.watch(path, { ...query, allowWatchBookmarks: true }, callback, done);
  }
}

export class Informer<T extends KubernetesObject> {
  readonly name: string;
  private readonly lw: ListWatch<T>;
  private readonly log: Logger;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private errorSinceStart = false;
  private syncedResolve: (() => void) | undefined;
  /** Resolves once the first list has been received. */
  readonly synced: Promise<void>;
  hasSynced = false;
  restarts = 0;
  lastError: string | undefined;
  /** Called after every add, update or delete (the cache already holds the change). */
  onChange: (type: 'add' | 'update' | 'delete', obj: T) => void = () => {};

  constructor(options: InformerOptions<T>) {
    this.name = options.name;
    this.log = options.log;
    this.initialMs = options.backoff?.initialMs ?? 500;
    this.maxMs = options.backoff?.maxMs ?? 30_000;
    this.lw = new ListWatch<T>(options.path, new BookmarkWatch(options.kc, () => this.stopped), options.list, false, options.labelSelector, options.fieldSelector);
    this.synced = new Promise((r) => (this.syncedResolve = r));
    this.lw.on('add', (o) => this.changed('add', o));
    this.lw.on('update', (o) => this.changed('update', o));
    this.lw.on('delete', (o) => this.changed('delete', o));
    this.lw.on('error', (err) => this.failed(err));
  }

  private changed(type: 'add' | 'update' | 'delete', obj: T): void {
    if (this.stopped) return;
    this.attempts = 0;
    this.onChange(type, obj);
  }

  private failed(err: unknown): void {
    this.errorSinceStart = true;
    if (this.stopped) return;
    const e = err as { message?: string; statusCode?: number; code?: number | string };
    this.lastError = `${e.statusCode ?? e.code ?? ''} ${e.message ?? String(err)}`.trim();
    const base = Math.min(this.maxMs, this.initialMs * 2 ** this.attempts);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempts++;
    this.restarts++;
    this.log.warn({ informer: this.name, err: this.lastError, retryInMs: delay, attempt: this.attempts }, 'watch failed; restarting it');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.run(), delay);
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    this.errorSinceStart = false;
    try {
      await this.lw.start();
    } catch (err) {
      this.failed(err);
      return;
    }
    if (!this.lw.latestResourceVersion()) return;
    // The list has arrived (even if the watch after it failed and is being retried).
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.syncedResolve?.();
    }
    if (!this.errorSinceStart) {
      this.attempts = 0;
      this.lastError = undefined;
    }
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    void this.lw.stop();
  }

  list(): readonly T[] {
    return this.lw.list();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }
}
