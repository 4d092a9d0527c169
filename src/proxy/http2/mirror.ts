// SPDX-License-Identifier: Apache-2.0
/**
 * Mirroring over HTTP/2: a copy of a request, body included, to a shadow
 * service on its own h2c session; the answer is read and dropped. Nothing
 * the shadow does (failing, hanging, answering slowly) reaches the real request,
 * and no copy outlives the shadow's request timeout.
 */
import { type ClientHttp2Stream, type OutgoingHttpHeaders, constants } from 'node:http2';
import type { ProxyCore } from '../core.ts';
import type { Head } from '../http1/parse.ts';
import { mirrorTarget } from '../route.ts';
import { timerMs } from '../timer.ts';

/** The shadow's copy of a request body: fed as the real one arrives. */
export class Shadow {
  private stream: ClientHttp2Stream | null;
  private bytes = 0;
  private readonly limit: number;

  constructor(stream: ClientHttp2Stream, limit: number) {
    this.stream = stream;
    this.limit = limit;
  }

  /**
   * Written without waiting for the shadow's flow control (the real request
   * must not wait for it): past limit bytes the copy is given up instead, so
   * what waits in memory for a slow shadow stays bounded.
   */
  write(chunk: Buffer): void {
    const s = this.stream;
    if (!s) return;
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return this.cancel();
    s.write(chunk);
  }

  end(): void {
    this.stream?.end();
    this.stream = null;
  }

  /** The real request did not end properly: the shadow must not take a cut-off body for a whole one. */
  cancel(): void {
    const s = this.stream;
    this.stream = null;
    if (s && !s.closed) s.close(constants.NGHTTP2_CANCEL);
  }
}

/**
 * Starts the copy of a request to serviceKey, or nothing when the shadow has
 * no endpoint or no room for another connection. headersFor makes the
 * request's headers for an endpoint and authority (as for the real one).
 */
export function mirror(core: ProxyCore, head: Head, serviceKey: string, peerIp: string, limit: number, headersFor: (t: { address: string; port: number; host: string }) => OutgoingHttpHeaders): Shadow | null {
  const to = mirrorTarget(core, head, serviceKey, peerIp);
  if (!to) return null;
  const { service: svc, address, port } = to;
  const policy = svc.policy;
  // The shadow's own circuit breaker: a copy never opens a connection past its maxConnections.
  if (!core.h2.existing(address, port) && svc.live.connections >= policy.limits.maxConnections) return null;
  const session = core.h2.session(address, port, { idleTimeoutMs: policy.poolIdleTimeoutMs, connectTimeoutMs: policy.connectTimeoutMs, live: svc.live });
  const stream = session.request(headersFor(to), { endStream: false });
  core.metrics.mirrored.inc();
  stream.on('error', () => {});
  // Read to the end and dropped. The shadow's request timeout bounds the whole copy, its session's
  // connect included (as on HTTP/1.1): a timeout on inactivity alone lets a shadow that trickles a
  // byte now and then hold the stream, and a share of its session's streams, for ever.
  stream.resume();
  const timer = setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), timerMs(Math.max(policy.requestTimeoutMs, 1)));
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
  return new Shadow(stream, limit);
}
