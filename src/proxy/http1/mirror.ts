// SPDX-License-Identifier: Apache-2.0
/**
 * Mirroring: a copy of a request to a shadow service, whose response is read
 * and dropped. Nothing the shadow does (failing, hanging, answering slowly)
 * reaches the real request, and a shadow that hangs holds no more than its
 * own limits allow: its maxConnections, for its request timeout.
 */
import type { ProxyCore } from '../core.ts';
import { type Target, mirrorTarget } from '../route.ts';
import { timerMs } from '../timer.ts';
import type { ResponseSink, UpstreamConn } from '../upstream/conn.ts';
import type { Head } from './parse.ts';

type UpstreamTarget = Target & { kind: 'upstream' };

export function mirror(core: ProxyCore, head: Head, serviceKey: string, requestHead: (h: Head, t: UpstreamTarget) => Buffer | string, peerIp: string): void {
  const to = mirrorTarget(core, head, serviceKey, peerIp);
  if (!to) return;
  const { service: svc, address, port } = to;
  const policy = svc.policy;
  const live = svc.live;
  const pooled = core.pool.take(address, port);
  // The shadow's own circuit breaker: a copy never opens a connection past its maxConnections
  // (as on HTTP/2, it is dropped instead; the real request never waits for room).
  if (!pooled && live.connections >= policy.limits.maxConnections) return;
  const reqHead = requestHead(head, { kind: 'upstream', address, port, host: to.host });
  core.metrics.mirrored.inc();
  // The shadow's request timeout bounds the whole copy, its connect included; one cut short
  // is destroyed, never pooled: its response may still be on the way.
  const timeoutMs = timerMs(Math.max(policy.requestTimeoutMs, 1));
  const start = (conn: UpstreamConn, ms: number) => {
    const sink = new DiscardSink(core, conn, policy.poolIdleTimeoutMs);
    conn.begin(sink, head.method === 'HEAD');
    sink.timer = setTimeout(() => conn.abandon(), ms);
    sink.timer.unref();
    conn.socket.write(reqHead, 'latin1');
  };
  if (pooled) return start(pooled, timeoutMs);
  const deadline = Date.now() + timeoutMs;
  core.pool.connect(
    address,
    port,
    (err, conn) => {
      if (err || !conn) return;
      const left = deadline - Date.now();
      if (left <= 0) return conn.abandon();
      start(conn, left);
    },
    // A connect never outlives the copy's deadline by more than a timer's slack.
    Math.min(policy.connectTimeoutMs, timeoutMs),
    undefined,
    // Counted from the connect on: a burst of copies must not all be let through while none is connected yet.
    live,
  );
}

/** Reads a mirrored request's response to its end and drops it. */
class DiscardSink implements ResponseSink {
  private readonly core: ProxyCore;
  private readonly conn: UpstreamConn;
  private readonly idleTimeoutMs: number;
  /** The copy's request timeout, cleared once the response is over either way. */
  timer: NodeJS.Timeout | undefined;
  constructor(core: ProxyCore, conn: UpstreamConn, idleTimeoutMs: number) {
    this.core = core;
    this.conn = conn;
    this.idleTimeoutMs = idleTimeoutMs;
  }
  onInformational(): void {}
  onHead(): void {}
  onBody(): boolean {
    return true;
  }
  onTunnel(): void {}
  onEnd(reusable: boolean): void {
    clearTimeout(this.timer);
    if (reusable) this.core.pool.release(this.conn, this.idleTimeoutMs);
    else this.conn.socket.destroy();
  }
  onError(): void {
    clearTimeout(this.timer);
  }
}
