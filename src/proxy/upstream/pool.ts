// SPDX-License-Identifier: Apache-2.0
/** Keep-alive connections per upstream endpoint, reused last-in first-out. */
import { type Socket, connect } from 'node:net';
import { READ_BUFFER, UpstreamConn } from './conn.ts';
import { timerMs } from '../timer.ts';

export interface PoolOptions {
  maxIdlePerEndpoint?: number;
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export class UpstreamPool {
  /**
   * Idle connections by address, then port: both are values the routing
   * table holds, so no key string is built (and hashed) per request.
   */
  private readonly idle = new Map<string, Map<number, UpstreamConn[]>>();
  private readonly maxIdle: number;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  opened = 0;
  reused = 0;

  constructor(options: PoolOptions = {}) {
    this.maxIdle = options.maxIdlePerEndpoint ?? 256;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1000;
  }

  /** An idle pooled connection to address:port, if there is one. */
  take(address: string, port: number): UpstreamConn | undefined {
    const list = this.idle.get(address)?.get(port);
    while (list && list.length) {
      const c = list.pop()!;
      if (c.idle) {
        this.reused++;
        return c;
      }
    }
    return undefined;
  }

  /** An idle connection, or a new one; cb runs once, with an error or a connected conn. */
  acquire(address: string, port: number, cb: (err: Error | null, conn: UpstreamConn | null) => void): void {
    const c = this.take(address, port);
    if (c) cb(null, c);
    else this.connect(address, port, cb);
  }

  /** A new connection; cb runs once. */
  connect(address: string, port: number, cb: (err: Error | null, conn: UpstreamConn | null) => void, timeoutMs = this.connectTimeoutMs, dial?: () => Socket): void {
    const key = `${address}:${port}`;
    // dial: a socket made elsewhere, still pooled under address:port (an inbound application, reached in its pod).
    let socket: Socket;
    // Set right below; the socket reads nothing before it has connected.
    let conn: UpstreamConn | null = null;
    try {
      socket = dial ? dial() : connect({ host: address, port, noDelay: true, onread: { buffer: READ_BUFFER, callback: (n: number) => (conn?.onRead(n), true) } });
    } catch (err) {
      // A dial that cannot even make its socket (the pod's namespace is gone) is a failed connect.
      return void process.nextTick(() => cb(err as Error, null));
    }
    if (dial) socket.setNoDelay(true);
    this.opened++;
    conn = new UpstreamConn(socket, address, port, !dial);
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      socket.destroy();
      cb(Object.assign(new Error(`connect to ${key} timed out`), { code: 'ETIMEDOUT' }), null);
    }, timerMs(timeoutMs));
    socket.once('connect', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cb(null, conn);
    });
    socket.once('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cb(err, null);
    });
  }

  /** Back to the pool; closed once idle longer than idleTimeoutMs (its service's), within a sweep period. */
  release(conn: UpstreamConn, idleTimeoutMs = this.idleTimeoutMs): void {
    if (!conn.idle) {
      conn.socket.destroy();
      return;
    }
    let byPort = this.idle.get(conn.address);
    if (!byPort) this.idle.set(conn.address, (byPort = new Map()));
    let list = byPort.get(conn.port);
    if (!list) byPort.set(conn.port, (list = []));
    if (list.length >= this.maxIdle) {
      conn.socket.destroy();
      return;
    }
    conn.idleSince = this.clock;
    conn.idleTimeoutMs = idleTimeoutMs;
    list.push(conn);
    // A quarter of the shortest timeout seen (at most 5 s): the stamps are as coarse as the sweep.
    // 0: never closed for idleness (as in Envoy, and as an h2c session's timeout of 0).
    const every = idleTimeoutMs > 0 ? Math.min(5000, Math.max(25, Math.floor(idleTimeoutMs / 4))) : 5000;
    if (this.sweeper === undefined || every < this.sweepEveryMs) {
      clearInterval(this.sweeper);
      this.sweepEveryMs = every;
      this.sweeper = setInterval(() => this.sweep(), every).unref();
    }
  }

  /**
   * Idle connections past their timeout are closed by a periodic sweep, not a
   * timer per connection: re-arming a socket timer on every request costs
   * measurable throughput. The clock is NaN until the first sweep: a
   * release before it leaves the connection unstamped (NaN, not 0, for the
   * reason given at UpstreamConn.idleSince).
   */
  private clock = NaN;
  private sweeper: NodeJS.Timeout | undefined;
  private sweepEveryMs = 0;

  private sweep(): void {
    this.clock = Date.now();
    for (const list of this.lists()) {
      for (let i = list.length - 1; i >= 0; i--) {
        const c = list[i]!;
        // An unstamped connection's age is NaN, which is never past its timeout.
        if (!c.idle || (c.idleTimeoutMs > 0 && this.clock - c.idleSince > c.idleTimeoutMs)) {
          list.splice(i, 1);
          c.socket.destroy();
        } else if (Number.isNaN(c.idleSince)) {
          c.idleSince = this.clock;
        }
      }
    }
  }

  /** Idle connections per endpoint, for /metrics and status. */
  sizes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [address, byPort] of this.idle) for (const [port, list] of byPort) out[`${address}:${port}`] = list.filter((c) => c.idle).length;
    return out;
  }

  private *lists(): Iterable<UpstreamConn[]> {
    for (const byPort of this.idle.values()) yield* byPort.values();
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const list of this.lists()) for (const c of list) c.socket.destroy();
    this.idle.clear();
  }
}
