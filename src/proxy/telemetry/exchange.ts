// SPDX-License-Identifier: Apache-2.0
/** One finished request, whatever the protocol: its metrics, and its access-log line when sampled. */
import type { ProxyCore } from '../core.ts';
import { type Head, header } from '../http1/parse.ts';
import type { Target } from '../route.ts';
import type { HttpSeries, Peer, ProxyMetrics, RequestRecord } from './metrics.ts';

/** Istio's destination labels for where a request was sent (or answered). */
export function destinationOf(t: Target | null): Pick<RequestRecord, 'destination' | 'service' | 'serviceName' | 'serviceNamespace'> {
  if (t?.inbound) {
    // Inbound: this pod is the destination, its service the one whose endpoint it is.
    const s = t.inbound.service;
    const [ns = t.inbound.workload.namespace, name = t.inbound.workload.workload] = s ? s.key.split('/') : [];
    const where = t.kind === 'upstream' ? `${t.address}:${t.port}` : 'unknown';
    return { destination: t.inbound.workload, service: s ? (s.hosts[0] ?? `${name}.${ns}.svc.cluster.local`) : where, serviceName: name, serviceNamespace: ns };
  }
  const svc = t?.service;
  const [ns = 'unknown', name = 'unknown'] = svc ? svc.key.split('/') : [];
  const ep = t?.kind === 'upstream' ? t.endpoint : undefined;
  return {
    destination: svc ? { workload: ep?.labels.app ?? name, namespace: ns, app: ep?.labels.app ?? 'unknown', ...(ep?.labels.version ? { version: ep.labels.version } : {}) } : null,
    service: svc ? (svc.hosts[0] ?? `${name}.${ns}.svc.cluster.local`) : t?.kind === 'upstream' ? `${t.address}:${t.port}` : 'unknown',
    serviceName: name,
    serviceNamespace: ns,
  };
}

export interface Exchange {
  head: Head;
  protocol: string;
  grpc?: boolean;
  grpcStatus?: string;
  target: Target | null;
  source: Peer | null;
  status: number;
  flags: string;
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
  reporter?: 'source' | 'destination';
}

export function recordExchange(core: ProxyCore, x: Exchange): void {
  const m = core.metrics;
  m.observe(cachedSeries(m, x) ?? m.seriesFor(labelsOf(x)), x);
  const log = core.accessLog;
  if (!log || !log.wants()) return;
  const t = x.target;
  const requestId = x.head.requestId;
  log.write({
    start: new Date(Date.now() - x.durationMs).toISOString(),
    durationMs: Math.round(x.durationMs * 1000) / 1000,
    protocol: x.protocol,
    method: x.head.method,
    status: x.status,
    flags: x.flags,
    bytesReceived: x.requestBytes,
    bytesSent: x.responseBytes,
    ...(t?.kind === 'upstream' ? { upstream: `${t.address}:${t.port}` } : {}),
    ...(t?.service ? { service: t.service.key } : {}),
    ...(t?.route ? { route: t.route } : {}),
    ...(requestId ? { requestId } : {}),
    request: { authority: x.head.host ?? '', path: x.head.target, userAgent: header(x.head, 'user-agent') ?? '' },
  });
}

function labelsOf(x: Exchange): Omit<RequestRecord, 'durationMs' | 'requestBytes' | 'responseBytes'> {
  return {
    source: x.source,
    ...destinationOf(x.target),
    protocol: x.grpc ? 'grpc' : 'http',
    code: x.status,
    ...(x.grpcStatus !== undefined ? { grpcStatus: x.grpcStatus } : {}),
    flags: x.flags,
    ...(x.reporter ? { reporter: x.reporter } : {}),
  };
}

/**
 * The series of a plain proxied HTTP exchange, found by identity: the
 * endpoint fixes the destination labels within one routing table, then the
 * source workload, then the status. Anything else (local replies, gRPC,
 * inbound, passthrough) takes the label path.
 */
function cachedSeries(m: ProxyMetrics, x: Exchange): HttpSeries | undefined {
  const t = x.target;
  if (t === null || t.kind !== 'upstream' || !t.endpoint || !t.service || t.inbound || x.grpc || x.flags !== '-' || x.reporter !== undefined) return undefined;
  let bySource = m.seriesByEndpoint.get(t.endpoint);
  if (!bySource) m.seriesByEndpoint.set(t.endpoint, (bySource = new Map()));
  let byStatus = bySource.get(x.source);
  if (!byStatus) bySource.set(x.source, (byStatus = new Map()));
  let s = byStatus.get(x.status);
  if (!s) byStatus.set(x.status, (s = m.seriesFor(labelsOf(x))));
  return s;
}
