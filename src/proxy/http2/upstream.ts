// SPDX-License-Identifier: Apache-2.0
/** h2c sessions to upstream endpoints, one per endpoint, multiplexing every stream. */
import { type ClientHttp2Session, connect } from 'node:http2';
import { Socket, connect as netConnect } from 'node:net';
import { timerMs } from '../timer.ts';
import { type ConnCounts, roomMade } from '../upstream/waiters.ts';

export interface SessionOptions {
  /** The connection is made elsewhere (inbound: inside a pod), and the session is kept apart under key. */
  dial?: { key: string; connect: () => Socket };
  /** The service's connectionPool.idleTimeout, for a session this call opens. */
  idleTimeoutMs?: number;
  /**
   * A session this call opens that has not connected within this long is
   * destroyed, and its streams fail as a connect failure (without it, a
   * connect that hangs waits for the kernel's SYN retries: minutes).
   */
  connectTimeoutMs?: number;
  /** A session this call opens counts in live.connections until it closes (the service's circuit breaker). */
  live?: ConnCounts;
}


export class H2Upstreams {
  private readonly sessions = new Map<string, ClientHttp2Session>();
  /** Callbacks waiting for a session to connect; dropped when it closes first. */
  private readonly waiting = new WeakMap<ClientHttp2Session, Array<() => void>>();
  /**
   * By default, a session with no frames either way for this long is closed gracefully
   * (streams still open finish; the next request opens a new session), so
   * endpoints that left the mesh do not keep a connection each forever.
   */
  readonly idleTimeoutMs: number;

  constructor(options: { idleTimeoutMs?: number } = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  }

  /** The session (connected or still connecting) that session() would hand out now, if any. */
  existing(address: string, port: number, dialKey?: string): ClientHttp2Session | undefined {
    const have = this.sessions.get(dialKey ?? `${address}:${port}`);
    return have && !have.closed && !have.destroyed ? have : undefined;
  }

  /** The pooled session to address:port (or under options.dial.key), opened if there is none. */
  session(address: string, port: number, options: SessionOptions = {}): ClientHttp2Session {
    const { dial, live } = options;
    const key = dial?.key ?? `${address}:${port}`;
    const have = this.existing(address, port, key);
    if (have) return have;
    const host = address.includes(':') ? `[${address}]` : address;
    // The socket made here (or by dial) is kept: a session destroyed while it connects leaves its
    // socket still trying (SYN retries, minutes), so the connect timeout ends that too.
    let socket: Socket | undefined;
    const open = (): Socket => {
      if (!dial) return netConnect(port, address);
      try {
        return dial.connect();
      } catch (err) {
        // The dial could not even make its socket (the pod's namespace is gone): a failed connect, not a throw.
        const failed = new Socket();
        process.nextTick(() => failed.destroy(err as Error));
        return failed;
      }
    };
    const s = connect(`http://${host}:${port}`, { createConnection: () => (socket = open()) });
    s.on('error', () => {});
    const forget = () => {
      if (this.sessions.get(key) === s) this.sessions.delete(key);
    };
    s.on('close', forget);
    s.on('goaway', forget);
    if (live) {
      live.connections++;
      s.once('close', () => {
        live.connections--;
        // Room for an HTTP/1.1 request of the same service waiting under the limit (waiters.ts).
        roomMade(live);
      });
    }
    // One 'connect' listener per session, however many streams wait on it.
    const waiters: Array<() => void> = [];
    this.waiting.set(s, waiters);
    let timer: NodeJS.Timeout | undefined;
    if (options.connectTimeoutMs !== undefined && options.connectTimeoutMs > 0) {
      const ms = timerMs(options.connectTimeoutMs);
      timer = setTimeout(() => {
        forget();
        // The error is the cause its streams fail with: a connect failure.
        s.destroy(Object.assign(new Error(`connect to ${host}:${port} timed out`), { code: 'ETIMEDOUT' }));
        socket?.destroy();
      }, ms);
      timer.unref();
    }
    s.once('connect', () => {
      clearTimeout(timer);
      // Idle from here: a session still connecting is not idle (the connect timeout bounds that), and
      // closing it then would fail the streams waiting on it.
      s.setTimeout(options.idleTimeoutMs ?? this.idleTimeoutMs, () => {
        forget();
        s.close();
      });
      this.waiting.delete(s);
      for (const fn of waiters) fn();
    });
    s.once('close', () => {
      clearTimeout(timer);
      this.waiting.delete(s);
    });
    this.sessions.set(key, s);
    return s;
  }

  /** Runs fn once s has connected (at once if it has), or never, if it closes first. */
  whenConnected(s: ClientHttp2Session, fn: () => void): void {
    if (!s.connecting) return fn();
    this.waiting.get(s)?.push(fn);
  }

  get size(): number {
    return this.sessions.size;
  }

  close(): void {
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }
}
