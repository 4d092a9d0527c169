// SPDX-License-Identifier: Apache-2.0
/**
 * A real redis-server per test: its own unix socket and data directory, AOF
 * on (so a kill -9 and restart keeps every acknowledged write), stopped by
 * pid in teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export class RedisServer {
  readonly dir: string;
  readonly socket: string;
  private proc: ChildProcess | undefined;
  private readonly clients = new Set<Redis>();

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'kernmesh-redis-'));
    this.socket = join(this.dir, 'redis.sock');
  }

  get url(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<this> {
    const proc = spawn('redis-server', ['--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--maxclients', '4096'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    let log = '';
    proc.stdout!.on('data', (d) => (log += d));
    // Ready once it answers PING on the socket.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited: ${log}`);
      if (existsSync(this.socket)) {
        const c = new Redis({ path: this.socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        try {
          await c.connect();
          if ((await c.ping()) === 'PONG') {
            // The AOF must be fully loaded before a test writes or reads.
            const info = await c.info('persistence');
            if (/loading:0/.test(info)) return this;
          }
        } catch {
          /* not yet */
        } finally {
          c.disconnect();
        }
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not come up: ${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** kill -9: what a crash looks like. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
    rmSync(this.socket, { force: true });
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.disconnect();
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A client for the test itself; disconnected by stop(). */
  client(): Redis {
    const c = new Redis({ path: this.socket, maxRetriesPerRequest: 1 });
    c.on('error', () => {}); // reconnects are expected while the server is killed
    this.clients.add(c);
    return c;
  }
}
