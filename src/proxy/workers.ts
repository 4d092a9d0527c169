// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy on every core: N worker processes, each a full proxy with its own
 * event loop, listening on the same ports (SO_REUSEPORT). The primary hands
 * each config change to every worker; a worker swaps its table without
 * dropping connections.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import type { Server } from 'node:net';
import type { StoredObject } from '../config/store.ts';
import type { Peer, SummaryCounts } from './telemetry/metrics.ts';
import { packageScript } from '../paths.ts';
import { writeLines } from '../log.ts';
import type { LogLines } from './worker-log.ts';
import { type TokenAsk, TokenBank } from './policy/node-limits.ts';
import type { Grant } from './policy/rate-limit.ts';
import { type RoutingTable, buildTable, emptyTable } from './routing/table.ts';

export interface WorkerListen {
  port: number;
  host: string;
  service?: string;
}

/** What the primary's own ProxyCore has beside the table, and every worker must have too. */
export interface WorkerSettings {
  /** This node's zone, for locality-aware load balancing. */
  zone?: string;
  /** The share of requests access-logged (0: no access log). */
  accessLogSampling: number;
  /** The downstream idle timeout (ProxyServerOptions.idleTimeoutMs); default IDLE_TIMEOUT_MS. */
  idleTimeoutMs?: number;
}

/**
 * The objects a worker builds its table from, as a change to what it holds:
 * each object is sent once, under a number, and then named by that number
 * until it goes away. Sending the whole mesh on every change cost the primary
 * ~70 ms and each worker ~100 ms of parsing at 20 000 services, and gave each
 * worker all-new objects, so nothing compiled before could be reused
 * (buildTable keeps compiled forms by object). reset: start from nothing
 * (a replacement worker).
 */
export interface TableDelta {
  version: number;
  reset?: boolean;
  puts: Array<[number, StoredObject]>;
  deletes: number[];
}

export type WorkerMessage = (
  | ({ type: 'settings' } & WorkerSettings)
  | ({ type: 'table' } & TableDelta)
  | { type: 'listen'; listens: WorkerListen[] }
  | { type: 'adopt'; key: string; source?: Peer; originalDst?: boolean; inbound?: { workload: Peer; netnsPath: string } }
  | { type: 'release'; key: string }
  | { type: 'stats' }
  | { type: 'metrics' }
  | { type: 'summary' }
  | ({ type: 'tokens' } & Grant)
) & {
  /** Echoed in the answer, so overlapping requests each get their own. */
  id?: number;
};

let nextId = 1;

/** A worker's ask for the node's rate-limit tokens (answered with a 'tokens' message of the same id). */
export type TokenAskMessage = { type: 'tokens'; id: number } & TokenAsk;

export interface WorkerStats {
  pid: number;
  connectionsTotal: number;
  active: number;
  version: number;
}

const entry = packageScript('proxy/worker-main');

/**
 * Sends a message (and maybe a handle) and waits for the answer of that type
 * and id. Rejects, never hangs, when the worker is gone, the send fails, or
 * no answer comes within the timeout.
 */
function reply<T>(w: ChildProcess, type: string, send?: WorkerMessage, handle?: Server, timeoutMs = 10_000): Promise<T> {
  const id = send ? nextId++ : undefined;
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (err: Error | null, m?: unknown) => {
      clearTimeout(timer);
      w.off('message', onMessage);
      w.off('exit', onExit);
      if (err) reject(err);
      else resolve(m as T);
    };
    const onMessage = (m: { type: string; id?: number; error?: string }) => {
      if (m.type !== type || m.id !== id) return;
      done(m.error ? new Error(`proxy worker ${w.pid}: ${m.error}`) : null, m);
    };
    const onExit = (code: number | null) => done(new Error(`proxy worker ${w.pid} exited (${code}) before answering ${type}`));
    if (w.exitCode !== null || w.signalCode !== null || (send && !w.connected)) return onExit(w.exitCode);
    w.on('message', onMessage);
    w.once('exit', onExit);
    timer = setTimeout(() => done(new Error(`proxy worker ${w.pid} did not answer ${type} within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    if (send) w.send({ ...send, id }, handle, (err) => err && done(err));
  });
}

export type AdoptOptions = { source?: Peer; originalDst?: boolean; inbound?: { workload: Peer; netnsPath: string } };
type Adopted = { server: Server; options: AdoptOptions };

function spawnWorker(): ChildProcess {
  const w = fork(entry, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // A send to a worker that just died is reported here (and by reply()), never as an uncaught error.
  w.on('error', () => {});
  return w;
}

/** The number an object is sent to the workers under (TableDelta): one per object, for as long as it lives. */
const objectIds = new WeakMap<StoredObject, number>();
let lastObjectId = 0;

export class ProxyWorkers {
  private readonly workers: ChildProcess[];
  private stopping = false;
  /** The node's rate-limit buckets, dealt out to the workers (see node-limits.ts). */
  private readonly bank: TokenBank;
  /** With no table of the primary's given to start(), the bank's: built from what setObjects hands the workers. */
  private ownTable: RoutingTable | null;
  /** What a replacement worker needs: the last settings and table, its own listeners, and every listener adopted. */
  private settings: WorkerSettings | null = null;
  private table: { version: number; objects: Map<number, StoredObject> } | null = null;
  private listens: WorkerListen[] = [];
  private readonly adopted = new Map<string, Adopted[]>();
  /** Called when a worker died and was replaced (or could not be). */
  onRestart: (info: { pid: number | undefined; code: number | null; error?: string }) => void = () => {};
  /** Log lines a worker formatted (its access log), written by default through this process's logger. */
  onLog: (lines: string, pid: number | undefined) => void = writeLines;
  restarts = 0;

  private constructor(workers: ChildProcess[], table: (() => RoutingTable) | undefined) {
    this.workers = workers;
    // The primary serves connections too (the agent's listeners are shared, not handed over): one more process.
    this.ownTable = table ? null : emptyTable();
    this.bank = new TokenBank(table ?? (() => this.ownTable!), () => this.workers.length + 1);
    for (const w of workers) this.watch(w);
  }

  /**
   * Starts count workers (default: one per core) and waits until each can
   * take messages. table: the primary's own routing table, whose rate-limit
   * buckets are the node's (the agent's); without it the buckets are kept
   * here, in a table built from what setObjects sends.
   */
  static async start(count = availableParallelism(), table?: () => RoutingTable): Promise<ProxyWorkers> {
    const workers = Array.from({ length: count }, () => spawnWorker());
    try {
      await Promise.all(workers.map((w) => reply(w, 'ready')));
    } catch (err) {
      for (const w of workers) w.kill('SIGKILL');
      throw err;
    }
    return new ProxyWorkers(workers, table);
  }

  /** A worker that dies unasked is replaced: it gets the table and every listener, then takes its share again. */
  private watch(w: ChildProcess): void {
    w.on('message', (m: LogLines | TokenAskMessage) => {
      if (m.type === 'log') this.onLog(m.lines, w.pid);
      // A worker that died meanwhile took its waiting requests with it: a failed send needs nothing more.
      else if (m.type === 'tokens') w.send({ type: 'tokens', id: m.id, ...this.bank.answer(m) }, () => {});
    });
    w.once('exit', (code) => {
      if (this.stopping) return;
      const i = this.workers.indexOf(w);
      if (i < 0) return;
      this.restarts++;
      setTimeout(() => void this.replace(i, w.pid, code), 500).unref();
    });
  }

  private async replace(i: number, pid: number | undefined, code: number | null): Promise<void> {
    if (this.stopping) return;
    const fresh = spawnWorker();
    this.workers[i] = fresh;
    this.watch(fresh);
    try {
      await reply(fresh, 'ready');
      // Settings before the table and the listeners: no connection is served without this node's zone.
      if (this.settings) await reply(fresh, 'settings-applied', { type: 'settings', ...this.settings });
      if (this.table) await reply(fresh, 'table-applied', { type: 'table', version: this.table.version, reset: true, puts: [...this.table.objects], deletes: [] });
      if (this.listens.length) await reply(fresh, 'listening', { type: 'listen', listens: this.listens });
      for (const [key, list] of this.adopted) for (const a of list) await reply(fresh, 'adopted', { type: 'adopt', key, ...a.options }, a.server);
      this.onRestart({ pid, code });
    } catch (err) {
      this.onRestart({ pid, code, error: (err as Error).message });
    }
  }

  get pids(): number[] {
    return this.workers.map((w) => w.pid!);
  }

  /** Hands every worker the settings (the node's zone, access-log sampling, idle timeout); only sent when they changed. */
  async configure(settings: WorkerSettings): Promise<void> {
    const same = this.settings && this.settings.zone === settings.zone && this.settings.accessLogSampling === settings.accessLogSampling && this.settings.idleTimeoutMs === settings.idleTimeoutMs;
    if (same) return;
    this.settings = { ...settings };
    await Promise.all(this.workers.map((w) => reply(w, 'settings-applied', { type: 'settings', ...settings })));
  }

  async setObjects(version: number, objects: StoredObject[]): Promise<void> {
    const before = this.table?.objects ?? new Map<number, StoredObject>();
    const now = new Map<number, StoredObject>();
    const puts: Array<[number, StoredObject]> = [];
    for (const o of objects) {
      let id = objectIds.get(o);
      if (id === undefined) objectIds.set(o, (id = ++lastObjectId));
      now.set(id, o);
      if (!before.has(id)) puts.push([id, o]);
    }
    const deletes: number[] = [];
    for (const id of before.keys()) if (!now.has(id)) deletes.push(id);
    this.table = { version, objects: now };
    if (this.ownTable) this.ownTable = buildTable(version, objects, this.ownTable);
    await Promise.all(this.workers.map((w) => reply(w, 'table-applied', { type: 'table', version, puts, deletes })));
  }

  /** Every worker binds these ports itself (SO_REUSEPORT); a replacement worker binds them too. */
  async listen(listens: WorkerListen[]): Promise<void> {
    this.listens = [...this.listens, ...listens];
    await Promise.all(this.workers.map((w) => reply(w, 'listening', { type: 'listen', listens })));
  }

  /**
   * Shares a listening socket (a pod's, opened in its netns) with every
   * worker: each accepts on it, so the kernel spreads that pod's connections
   * over the cores. The original destination is read in the worker itself.
   */
  async adopt(key: string, server: Server, options: AdoptOptions): Promise<void> {
    this.adopted.set(key, [...(this.adopted.get(key) ?? []), { server, options }]);
    await Promise.all(this.workers.map((w) => reply(w, 'adopted', { type: 'adopt', key, ...options }, server)));
  }

  /** Closes every worker's copy of the listeners adopted under key. */
  async release(key: string): Promise<void> {
    this.adopted.delete(key);
    await Promise.all(this.workers.map((w) => reply(w, 'released', { type: 'release', key })));
  }

  /** Per-service request counts and duration buckets, one list per worker (added up by summarize()). */
  summaries(): Promise<SummaryCounts[][]> {
    return Promise.all(this.workers.map((w) => reply<{ counts: SummaryCounts[] }>(w, 'summary', { type: 'summary' }).then((m) => m.counts)));
  }

  stats(): Promise<WorkerStats[]> {
    return Promise.all(this.workers.map((w) => reply<WorkerStats>(w, 'stats', { type: 'stats' })));
  }

  /** Each worker's exposition (they are separate processes, with separate counters). */
  async metrics(): Promise<string[]> {
    return (await Promise.all(this.workers.map((w) => reply<{ text: string }>(w, 'metrics', { type: 'metrics' })))).map((m) => m.text);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null || w.signalCode !== null) return resolve();
            w.once('exit', () => resolve());
            w.kill('SIGTERM');
          }),
      ),
    );
  }
}
