// SPDX-License-Identifier: Apache-2.0
/**
 * The proxy's listeners: accept, find where the connection was going,
 * detect the protocol, and hand it to the HTTP/1.1 session or the TCP pipe.
 */
import { type Server, type Socket, createServer } from 'node:net';
import type { ProxyCore } from './core.ts';
import { type DetectOptions, detect } from './detect.ts';
import { Http1Session } from './http1/session.ts';
import { type H2Server, h2Server, serveH2 } from './http2/session.ts';
import { denied, deniedAtDestination } from './policy/authz.ts';
import { endpointPort, endpointsOf, peerOf, serviceByEndpoint, serviceFor, servicePortAt, servicesByEndpoint } from './routing/select.ts';
import type { RoutingTable } from './routing/table.ts';
import { pipeTcp } from './tcp.ts';
import type { InboundDial } from './route.ts';
import { sniOf } from './tls.ts';
import type { Peer, TcpRecord } from './telemetry/metrics.ts';

export interface ListenerOptions {
  /** Where an accepted connection was going: SO_ORIGINAL_DST through the datapath (outbound listeners). */
  originalDst?: (socket: Socket) => { address: string; port: number } | null;
  /** Bound listeners serve one service (local mode, gateways, benchmarks). */
  service?: string;
  /** The workload this listener's traffic comes from (per-pod outbound listeners). */
  source?: Peer;
  detectTimeoutMs?: number;
  /**
   * An inbound listener (in a pod's netns): connections arriving at the pod
   * are handed over by the datapath with their addresses untouched, so the
   * local address is where the client was going; they are passed on to the
   * application at that same address from inside the pod, reported as the
   * destination.
   */
  inbound?: { workload: Peer; dial: InboundDial };
}

export interface ProxyServerOptions {
  /**
   * A client connection on an HTTP port is closed once idle this long: an
   * HTTP/1.1 one between requests, an h2c one with no stream open, one that
   * never spoke on a port declared HTTP. Default IDLE_TIMEOUT_MS.
   */
  idleTimeoutMs?: number;
}

export class ProxyServer {
  readonly core: ProxyCore;
  private readonly servers: Server[] = [];
  /** The HTTP/2 side of every h2c connection this server accepts (it holds the idle timeout for both protocols). */
  private readonly h2: H2Server;
  private readonly sockets = new Set<Socket>();
  connectionsTotal = 0;
  /** TLS passed through, by the server name its ClientHello asked for (bounded by what clients ask). */
  readonly tlsServerNames = new Map<string, number>();

  constructor(core: ProxyCore, options: ProxyServerOptions = {}) {
    this.core = core;
    this.h2 = h2Server(options.idleTimeoutMs);
  }

  /** See ProxyServerOptions; a change (a worker told the agent's setting after it started) holds for connections accepted after it. */
  get idleTimeoutMs(): number {
    return this.h2.idleTimeoutMs;
  }

  set idleTimeoutMs(ms: number) {
    this.h2.idleTimeoutMs = ms;
  }

  get activeConnections(): number {
    return this.sockets.size;
  }

  /**
   * Serves a listening fd (from listenInNetns) or listens on host:port;
   * reusePort lets several worker processes share one port (SO_REUSEPORT).
   */
  listen(where: { fd: number } | { port: number; host: string; reusePort?: boolean } | { handle: object }, options: ListenerOptions = {}): Promise<Server> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => this.accept(s, options));
    this.servers.push(server);
    // A listener closed on its own (a pod gone) leaves the list, so pod churn does not grow it.
    server.once('close', () => this.servers.splice(this.servers.indexOf(server) >>> 0, 1));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // A handle: a listening server another process sent over IPC (a worker adopting a pod's listener).
      if ('handle' in where) server.listen(where.handle, () => resolve(server));
      else server.listen(where, () => resolve(server));
    });
  }

  private accept(socket: Socket, options: ListenerOptions): void {
    this.connectionsTotal++;
    this.sockets.add(socket);
    this.core.metrics.activeConnections.inc();
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.core.metrics.activeConnections.dec();
    });
    socket.on('error', () => socket.destroy());
    if (options.inbound) return this.inbound(socket, options.inbound, options.detectTimeoutMs ?? 100);
    let origDst: { address: string; port: number } | null = null;
    try {
      origDst = options.originalDst?.(socket) ?? null;
    } catch {
      origDst = null; // not redirected: only a bound listener can still serve it
    }
    const bound = options.service ?? null;
    const svc = bound ? this.core.table.services.get(bound) : serviceFor(this.core.table, origDst, null);
    // A declared protocol skips detection.
    const declared = svc?.ports.find((p) => p.port === origDst?.port)?.protocol ?? (bound ? svc?.ports[0]?.protocol : undefined);
    if (declared === 'tcp' || declared === 'tls') return this.tcp(socket, origDst, bound, null, options.source ?? null);
    // Declared HTTP ports still tell HTTP/1.x from h2 prior knowledge (and TLS) by the first bytes,
    // however late they come: a pool that connects ahead of its first request is still served as HTTP.
    const idleTimeoutMs = this.idleTimeoutMs;
    detect(socket, detectOptions(declared, idleTimeoutMs, options.detectTimeoutMs), (proto, initial) => {
      if (proto === 'http1') new Http1Session(socket, { core: this.core, source: options.source ?? null, origDst, service: bound, idleTimeoutMs }, initial);
      else if (proto === 'http2') serveH2(this.h2, socket, initial, { core: this.core, origDst, service: bound, source: options.source ?? null });
      else {
        if (proto === 'tls' && initial) {
          const sni = sniOf(initial);
          if (sni) this.tlsServerNames.set(sni, (this.tlsServerNames.get(sni) ?? 0) + 1);
        }
        this.tcp(socket, origDst, bound, initial, options.source ?? null);
      }
    });
  }

  private tcp(socket: Socket, origDst: { address: string; port: number } | null, bound: string | null, initial: Buffer | null, source: Peer | null): void {
    const svc = bound ? this.core.table.services.get(bound) : serviceFor(this.core.table, origDst, null);
    const [ns = 'unknown', name = 'unknown'] = svc ? svc.key.split('/') : [];
    const rec = {
      source,
      destination: svc ? { workload: name, namespace: ns, app: 'unknown' } : null,
      service: svc ? (svc.hosts[0] ?? `${name}.${ns}.svc.cluster.local`) : origDst ? `${origDst.address}:${origDst.port}` : 'unknown',
      serviceName: name,
      serviceNamespace: ns,
    };
    let address: string;
    let port: number;
    // Authorization applies to TCP as well: by source and port (see denied for rules about HTTP).
    if (svc && denied(svc.authz, source, null, origDst?.port ?? svc.ports[0]?.port ?? 0)) return this.refuseTcp(socket, rec, initial, 'RBAC');
    if (svc) {
      const ep = this.core.balancer.pick(svc, endpointsOf(svc, undefined), null, socket.remoteAddress ?? '');
      if (!ep) return this.refuseTcp(socket, rec, initial, 'UH');
      address = ep.address;
      port = endpointPort(ep, svc.ports.find((p) => p.port === origDst?.port) ?? svc.ports[0]);
    } else if (origDst) {
      address = origDst.address;
      port = origDst.port;
    } else {
      return this.refuseTcp(socket, rec, initial, 'NR');
    }
    this.core.metrics.tcpOpen(rec);
    const policy = svc?.policy ?? this.core.table.defaultPolicy;
    pipeTcp(socket, address, port, initial, { idleTimeoutMs: policy.tcpIdleTimeoutMs, connectTimeoutMs: policy.connectTimeoutMs, onClose: (st) => this.core.metrics.tcpClose(rec, st.sent, st.received) });
  }

  /**
   * Inbound: HTTP/1.x and h2c (gRPC) are served request by request
   * (authorization and telemetry as the destination); anything else goes to the pod's
   * application, at the address and port the client asked for, as TCP.
   */
  private inbound(socket: Socket, inbound: NonNullable<ListenerOptions['inbound']>, detectTimeoutMs: number): void {
    const origDst = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    const idleTimeoutMs = this.idleTimeoutMs;
    detect(socket, detectOptions(this.inboundProtocol(origDst.address, origDst.port), idleTimeoutMs, detectTimeoutMs), (proto, initial) => {
      if (proto === 'http1') new Http1Session(socket, { core: this.core, source: null, origDst, service: null, inbound, idleTimeoutMs }, initial);
      else if (proto === 'http2') serveH2(this.h2, socket, initial, { core: this.core, origDst, service: null, source: null, inbound });
      else this.inboundTcp(socket, inbound, initial);
    });
  }

  /** Per routing table: finding a pod port's service scans every endpoint, too much for every connection. */
  private inboundProtocols: { table: RoutingTable | null; byPort: Map<string, string | undefined> } = { table: null, byPort: new Map() };

  /** The protocol declared for a pod's address and port (by a service it backs), if any. */
  private inboundProtocol(address: string, port: number): string | undefined {
    const table = this.core.table;
    if (this.inboundProtocols.table !== table) this.inboundProtocols = { table, byPort: new Map() };
    const known = this.inboundProtocols.byPort;
    const key = `${address}|${port}`;
    if (known.has(key)) return known.get(key);
    const svc = serviceByEndpoint(table, address, port);
    const declared = svc && servicePortAt(table, svc, address, port)?.protocol;
    known.set(key, declared);
    return declared;
  }

  private inboundTcp(socket: Socket, inbound: NonNullable<ListenerOptions['inbound']>, initial: Buffer | null): void {
    const address = socket.localAddress ?? '';
    const port = socket.localPort ?? 0;
    const svc = serviceByEndpoint(this.core.table, address, port);
    const [ns = inbound.workload.namespace, name = inbound.workload.workload] = svc ? svc.key.split('/') : [];
    const rec = {
      reporter: 'destination' as const,
      source: peerOf(this.core.table, socket.remoteAddress ?? ''),
      destination: inbound.workload,
      service: svc ? (svc.hosts[0] ?? `${name}.${ns}.svc.cluster.local`) : `${address}:${port}`,
      serviceName: name,
      serviceNamespace: ns,
    };
    // What depends on the connection alone is enforced here too (see deniedAtDestination), for every service this pod backs.
    for (const s of servicesByEndpoint(this.core.table, address, port)) {
      if (deniedAtDestination(s.authz, null, servicePortAt(this.core.table, s, address, port)?.port ?? port)) return this.refuseTcp(socket, rec, initial, 'RBAC');
    }
    this.core.metrics.tcpOpen(rec);
    const policy = svc?.policy ?? this.core.table.defaultPolicy;
    pipeTcp(socket, address, port, initial, { idleTimeoutMs: policy.tcpIdleTimeoutMs, connectTimeoutMs: policy.connectTimeoutMs, dial: () => inbound.dial(address, port), onClose: (st) => this.core.metrics.tcpClose(rec, st.sent, st.received) });
  }

  /** A TCP connection not taken (flags say why): counted as closed with what it sent, and reset. */
  private refuseTcp(socket: Socket, rec: TcpRecord, initial: Buffer | null, flags: string): void {
    this.core.metrics.tcpClose(rec, 0, initial?.length ?? 0, flags);
    socket.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
    this.core.pool.close();
    this.core.h2.close();
  }
}

/**
 * How a port's declared protocol (if any) shapes detection; ports not declared HTTP may be server-first.
 * A silent client on a declared HTTP port is let go after the idle timeout, as an idle one would be.
 */
function detectOptions(declared: string | undefined, idleTimeoutMs: number, timeoutMs = 100): DetectOptions {
  const http = declared === 'http' || declared === 'http2' || declared === 'grpc';
  return http ? { timeoutMs, declaredHttpIdleMs: idleTimeoutMs } : { timeoutMs };
}
