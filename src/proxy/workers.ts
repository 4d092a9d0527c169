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

export interface WorkerListen {
  port: number;
  host: string;
  service?: string;
}

export type WorkerMessage = (
  | { type: 'table'; version: number; objects: StoredObject[] }
  | { type: 'listen'; listens: WorkerListen[] }
  | { type: 'adopt'; key: string; source?: Peer; originalDst?: boolean }
  | { type: 'release'; key: string }
  | { type: 'stats' }
  | { type: 'metrics' }
  | { type: 'summary' }
) & {
  /** Echoed in the answer, so overlapping requests each get their own. */
  id?: number;
};

let nextId = 1;

export interface WorkerStats {
  pid: number;
  connectionsTotal: number;
  active: number;
  version: number;
}

const entry = packageScript('proxy/worker-main');

function reply<T>(w: ChildProcess, type: string, send?: WorkerMessage, handle?: Server): Promise<T> {
  const id = send ? nextId++ : undefined;
  return new Promise((resolve, reject) => {
    const onMessage = (m: { type: string; id?: number }) => {
      if (m.type !== type || m.id !== id) return;
      w.off('message', onMessage);
      w.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null) => reject(new Error(`proxy worker ${w.pid} exited (${code}) before answering ${type}`));
    w.on('message', onMessage);
    w.once('exit', onExit);
    if (send) w.send({ ...send, id }, handle);
  });
}

export class ProxyWorkers {
  private readonly workers: ChildProcess[];

  private constructor(workers: ChildProcess[]) {
    this.workers = workers;
  }

  /** Starts count workers (default: one per core) and waits until each can take messages. */
  static async start(count = availableParallelism()): Promise<ProxyWorkers> {
    const workers = Array.from({ length: count }, () => fork(entry, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    try {
      await Promise.all(workers.map((w) => reply(w, 'ready')));
    } catch (err) {
      for (const w of workers) w.kill('SIGKILL');
      throw err;
    }
    return new ProxyWorkers(workers);
  }

  get pids(): number[] {
    return this.workers.map((w) => w.pid!);
  }

  async setObjects(version: number, objects: StoredObject[]): Promise<void> {
    await Promise.all(this.workers.map((w) => reply(w, 'table-applied', { type: 'table', version, objects })));
  }

  async listen(listens: WorkerListen[]): Promise<void> {
    await Promise.all(this.workers.map((w) => reply(w, 'listening', { type: 'listen', listens })));
  }

  /**
   * Shares a listening socket (a pod's, opened in its netns) with every
   * worker: each accepts on it, so the kernel spreads that pod's connections
   * over the cores. The original destination is read in the worker itself.
   */
  async adopt(key: string, server: Server, options: { source?: Peer; originalDst?: boolean }): Promise<void> {
    await Promise.all(this.workers.map((w) => reply(w, 'adopted', { type: 'adopt', key, ...options }, server)));
  }

  /** Closes every worker's copy of the listeners adopted under key. */
  async release(key: string): Promise<void> {
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
