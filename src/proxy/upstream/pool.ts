// SPDX-License-Identifier: Apache-2.0
/** Keep-alive connections per upstream endpoint, reused last-in first-out. */
import { type Socket, connect } from 'node:net';
import { READ_BUFFER, UpstreamConn } from './conn.ts';
import { timerMs } from '../timer.ts';
import { type ConnCounts, pooledFor, roomMade } from './waiters.ts';

export interface PoolOptions {
  maxIdlePerEndpoint?: number;
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/**
 * A quarter of an idle timeout, within 25 ms and 5 s: stamps are as coarse as
 * the sweep. A timeout of 0 means never closed for idleness (as in Envoy, and
 * as an h2c session's timeout of 0), swept only for dead connections.
 */
function sweepPeriod(idleTimeoutMs: number): number {
  return idleTimeoutMs > 0 ? Math.min(5000, Math.max(25, Math.floor(idleTimeoutMs / 4))) : 5000;
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

  /**
   * A new connection; cb runs once. counted: a service's live counts, whose
   * connections this one counts against from its connect on until its socket
   * closes (a burst must not open one each while none is connected yet);
   * its close makes room for a request waiting under the limit.
   */
  connect(address: string, port: number, cb: (err: Error | null, conn: UpstreamConn | null) => void, timeoutMs = this.connectTimeoutMs, dial?: () => Socket, counted?: ConnCounts): void {
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
    if (counted) {
      counted.connections++;
      // A failed or timed-out connect closes its socket too.
      socket.once('close', () => {
        counted.connections--;
        roomMade(counted);
      });
    }
    this.opened++;
    conn = new UpstreamConn(socket, address, port, !dial, counted ?? null);
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

  /**
   * Back to the pool; closed once idle longer than idleTimeoutMs (its
   * service's), within a sweep period. While requests wait under its
   * service's connection limit it goes to the first one waiting for its
   * endpoint, or, when they all wait for others, closes to make room.
   */
  release(conn: UpstreamConn, idleTimeoutMs = this.idleTimeoutMs): void {
    if (!conn.idle || (conn.counted !== null && !pooledFor(conn.counted, conn.address, conn.port))) {
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
    const every = sweepPeriod(idleTimeoutMs);
    const faster = this.sweeper === undefined || every < this.sweepEveryMs;
    // The clock is as old as the slower period: stamped with it, this connection could look idle
    // for up to that long already at the first faster sweep (a stopped sweep's clock is NaN).
    if (faster && this.sweeper !== undefined) this.clock = Date.now();
    conn.idleSince = this.clock;
    conn.idleTimeoutMs = idleTimeoutMs;
    list.push(conn);
    if (faster) this.sweepEvery(every);
  }

  private sweepEvery(ms: number): void {
    clearInterval(this.sweeper);
    this.sweepEveryMs = ms;
    this.sweeper = setInterval(() => this.sweep(), ms).unref();
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

  /** How often the pool sweeps now (0: no sweep armed), for tests and status. */
  get sweepPeriodMs(): number {
    return this.sweeper === undefined ? 0 : this.sweepEveryMs;
  }

  private sweep(): void {
    this.clock = Date.now();
    // The period follows the shortest timeout among the connections still idle, so one service's short timeout does not keep every pool sweeping fast after its connections are gone.
    let shortest = Infinity;
    let left = 0;
    for (const list of this.lists()) {
      for (let i = list.length - 1; i >= 0; i--) {
        const c = list[i]!;
        // An unstamped connection's age is NaN, which is never past its timeout.
        if (!c.idle || (c.idleTimeoutMs > 0 && this.clock - c.idleSince > c.idleTimeoutMs)) {
          list.splice(i, 1);
          c.socket.destroy();
          continue;
        }
        if (Number.isNaN(c.idleSince)) c.idleSince = this.clock;
        left++;
        if (c.idleTimeoutMs > 0 && c.idleTimeoutMs < shortest) shortest = c.idleTimeoutMs;
      }
    }
    if (left === 0) {
      // Nothing to sweep: stop until the next release, whose connections the stale clock must not stamp.
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.clock = NaN;
      return;
    }
    const every = sweepPeriod(shortest === Infinity ? 0 : shortest);
    if (every !== this.sweepEveryMs) this.sweepEvery(every);
  }

  /**
   * Closes one idle connection counted against `counts`, so that a request
   * waiting under that limit for another endpoint can open its own (whose
   * connections sit idle elsewhere would otherwise hold the room until their
   * idle timeout). False when there is none.
   */
  evictIdle(counts: ConnCounts): boolean {
    for (const list of this.lists()) {
      for (let i = list.length - 1; i >= 0; i--) {
        const c = list[i]!;
        if (c.counted !== counts || !c.idle) continue;
        list.splice(i, 1);
        c.socket.destroy();
        return true;
      }
    }
    return false;
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
