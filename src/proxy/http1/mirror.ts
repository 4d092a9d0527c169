// SPDX-License-Identifier: Apache-2.0
/** Mirroring: a copy of a request to a shadow service, whose response is read and dropped. */
import type { ProxyCore } from '../core.ts';
import { type Target, mirrorTarget } from '../route.ts';
import type { ResponseSink, UpstreamConn } from '../upstream/conn.ts';
import type { Head } from './parse.ts';

type UpstreamTarget = Target & { kind: 'upstream' };

export function mirror(core: ProxyCore, head: Head, serviceKey: string, requestHead: (h: Head, t: UpstreamTarget) => Buffer | string, peerIp: string): void {
  const to = mirrorTarget(core, head, serviceKey, peerIp);
  if (!to) return;
  const reqHead = requestHead(head, { kind: 'upstream', address: to.address, port: to.port, host: to.host });
  core.metrics.mirrored.inc();
  core.pool.acquire(to.address, to.port, (err, conn) => {
    if (err || !conn) return;
    conn.begin(new DiscardSink(core, conn, to.service.policy.poolIdleTimeoutMs), head.method === 'HEAD');
    conn.socket.write(reqHead, 'latin1');
  });
}

/** Reads a mirrored request's response to its end and drops it. */
class DiscardSink implements ResponseSink {
  private readonly core: ProxyCore;
  private readonly conn: UpstreamConn;
  private readonly idleTimeoutMs: number;
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
    if (reusable) this.core.pool.release(this.conn, this.idleTimeoutMs);
    else this.conn.socket.destroy();
  }
  onError(): void {}
}
