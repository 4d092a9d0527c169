// SPDX-License-Identifier: Apache-2.0
/** h2c sessions to upstream endpoints, one per endpoint, multiplexing every stream. */
import { type ClientHttp2Session, connect } from 'node:http2';
import type { Socket } from 'node:net';

export class H2Upstreams {
  private readonly sessions = new Map<string, ClientHttp2Session>();
  /**
   * By default, a session with no frames either way for this long is closed gracefully
   * (streams still open finish; the next request opens a new session), so
   * endpoints that left the mesh do not keep a connection each forever.
   */
  readonly idleTimeoutMs: number;

  constructor(options: { idleTimeoutMs?: number } = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  }

  /**
   * dial: the connection is made elsewhere (inbound: inside a pod), and the session is kept apart under key.
   * idleTimeoutMs: the service's connectionPool.idleTimeout, for a session this call opens.
   */
  session(address: string, port: number, dial?: { key: string; connect: () => Socket }, idleTimeoutMs = this.idleTimeoutMs): ClientHttp2Session {
    const key = dial?.key ?? `${address}:${port}`;
    const have = this.sessions.get(key);
    if (have && !have.closed && !have.destroyed) return have;
    const host = address.includes(':') ? `[${address}]` : address;
    const s = dial ? connect(`http://${host}:${port}`, { createConnection: () => dial.connect() }) : connect(`http://${host}:${port}`);
    s.on('error', () => {});
    const forget = () => {
      if (this.sessions.get(key) === s) this.sessions.delete(key);
    };
    s.on('close', forget);
    s.on('goaway', forget);
    s.setTimeout(idleTimeoutMs, () => {
      forget();
      s.close();
    });
    this.sessions.set(key, s);
    return s;
  }

  get size(): number {
    return this.sessions.size;
  }

  close(): void {
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }
}
