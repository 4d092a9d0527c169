// SPDX-License-Identifier: Apache-2.0
/** A redis-server for one benchmark run: unix socket in a temp dir, AOF every second, stopped by pid. */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export class BenchRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'kernmesh-bench-redis-'));
  readonly socket = join(this.dir, 'redis.sock');
  private proc: ChildProcess | undefined;

  get url(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', '0', '--unixsocket', this.socket, '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--maxclients', '10000'], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (existsSync(this.socket)) {
        const c = new Redis({ path: this.socket, lazyConnect: true, retryStrategy: () => null });
        try {
          await c.connect();
          if ((await c.ping()) === 'PONG') return;
        } catch {
          /* not yet */
        } finally {
          c.disconnect();
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('redis-server did not start');
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGTERM');
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
