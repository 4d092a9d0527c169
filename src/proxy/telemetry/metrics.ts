// SPDX-License-Identifier: Apache-2.0
/**
 * Istio's standard metrics, with its names, labels and Envoy's millisecond
 * buckets, so that existing dashboards work; plus the proxy's own health.
 *
 * Labels are bounded (services, workloads, codes, flags: never an address or
 * an id). The per-request HTTP series are aggregated here, in plain arrays
 * keyed by one string, and rendered at scrape time: prom-client validates
 * and hashes a label object on every observe, which doubled the proxy's CPU
 * per request. Everything else (TCP, health) goes through prom-client.
 */
import { Counter, Gauge, Registry } from 'prom-client';

/** Envoy's default histogram buckets, in milliseconds. */
export const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000];

const HTTP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_app',
  'destination_workload',
  'destination_workload_namespace',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;
const TCP_LABELS = HTTP_LABELS.filter((l) => !['request_protocol', 'response_code', 'grpc_response_status'].includes(l));

export interface Peer {
  workload: string;
  namespace: string;
  app: string;
  version?: string;
  /** What authorization policies match as an identity (e.g. a service account). */
  identity?: string;
}

export interface RequestRecord {
  source: Peer | null;
  destination: Peer | null;
  /** "name.namespace.svc.cluster.local" or the original destination for passthrough. */
  service: string;
  serviceName: string;
  serviceNamespace: string;
  protocol: 'http' | 'grpc';
  code: number;
  grpcStatus?: string;
  flags: string;
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
  /** "destination" on the inbound side; default: the proxy's own (source). */
  reporter?: 'source' | 'destination';
}

/** A TCP connection's labels; reporter "destination" for the inbound side. */
export type TcpRecord = Pick<RequestRecord, 'source' | 'destination' | 'service' | 'serviceName' | 'serviceNamespace'> & { reporter?: 'source' | 'destination' };

/** One label set's aggregates: a request count and three histograms. */
export interface HttpSeries {
  labels: string;
  /** Its response_flags label: a local reply's flag is also counted apart. */
  flags: string;
  requests: number;
  duration: Float64Array; // bucket counts (non-cumulative), then +Inf
  durationSum: number;
  reqBytes: Float64Array;
  reqBytesSum: number;
  resBytes: Float64Array;
  resBytesSum: number;
}

function bucketIndex(bounds: number[], v: number): number {
  for (let i = 0; i < bounds.length; i++) if (v <= bounds[i]!) return i;
  return bounds.length;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export interface SummaryCounts {
  service: string;
  requests: number;
  errors: number;
  buckets: number[];
}

export interface ServiceSummary {
  service: string;
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

/** Summaries from the counts of one or more processes (workers), added up before the quantiles. */
export function summarize(lists: SummaryCounts[][]): ServiceSummary[] {
  const by = new Map<string, SummaryCounts>();
  for (const list of lists) {
    for (const c of list) {
      const agg = by.get(c.service) ?? { service: c.service, requests: 0, errors: 0, buckets: c.buckets.map(() => 0) };
      agg.requests += c.requests;
      agg.errors += c.errors;
      c.buckets.forEach((n, i) => (agg.buckets[i] = (agg.buckets[i] ?? 0) + n));
      by.set(c.service, agg);
    }
  }
  const quantile = (b: number[], total: number, q: number) => {
    let cum = 0;
    for (let i = 0; i < b.length; i++) {
      cum += b[i]!;
      if (cum >= q * total) return DURATION_BUCKETS_MS[i] ?? Infinity;
    }
    return Infinity;
  };
  return [...by.values()].map((a) => ({ service: a.service, requests: a.requests, errors: a.errors, p50Ms: quantile(a.buckets, a.requests, 0.5), p99Ms: quantile(a.buckets, a.requests, 0.99) }));
}

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly tcpSent: Counter;
  private readonly tcpReceived: Counter;
  private readonly tcpOpened: Counter;
  private readonly tcpClosed: Counter;
  readonly activeConnections: Gauge;
  readonly upstreamPoolIdle: Gauge;
  readonly localReplies: Counter;
  readonly retries: Counter;
  readonly mirrored: Counter;
  readonly ejections: Counter;
  readonly retryBudgetExhausted: Counter;
  private readonly series = new Map<string, HttpSeries>();
  private readonly reporter: 'source' | 'destination';

  constructor(reporter: 'source' | 'destination' = 'source') {
    this.reporter = reporter;
    const r = [this.registry];
    this.tcpSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent to the downstream on TCP connections', labelNames: TCP_LABELS, registers: r });
    this.tcpReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the downstream on TCP connections', labelNames: TCP_LABELS, registers: r });
    this.tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames: TCP_LABELS, registers: r });
    this.tcpClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames: TCP_LABELS, registers: r });
    this.activeConnections = new Gauge({ name: 'kernmesh_proxy_active_connections', help: 'Downstream connections open now', registers: r });
    this.upstreamPoolIdle = new Gauge({ name: 'kernmesh_proxy_upstream_idle_connections', help: 'Idle pooled upstream connections', registers: r });
    this.ejections = new Counter({ name: 'kernmesh_proxy_outlier_ejections_total', help: 'Endpoints ejected by outlier detection', labelNames: ['destination_service'], registers: r });
    this.mirrored = new Counter({ name: 'kernmesh_proxy_mirrored_requests_total', help: 'Requests copied to a shadow service', registers: r });
    this.retries = new Counter({ name: 'kernmesh_proxy_retries_total', help: 'Upstream attempts made again', registers: r });
    this.retryBudgetExhausted = new Counter({ name: 'kernmesh_proxy_retry_budget_exhausted_total', help: 'Retries refused by the retry budget or maxRetries', registers: r });
    this.localReplies = new Counter({ name: 'kernmesh_proxy_local_replies_total', help: 'Responses the proxy gave itself, by response flag', labelNames: ['response_flags'], registers: r });
  }

  private labels(rec: Pick<RequestRecord, 'source' | 'destination' | 'service' | 'serviceName' | 'serviceNamespace' | 'flags'> & { reporter?: 'source' | 'destination' }): Record<string, string> {
    return {
      reporter: rec.reporter ?? this.reporter,
      source_workload: rec.source?.workload ?? 'unknown',
      source_workload_namespace: rec.source?.namespace ?? 'unknown',
      source_app: rec.source?.app ?? 'unknown',
      destination_workload: rec.destination?.workload ?? 'unknown',
      destination_workload_namespace: rec.destination?.namespace ?? 'unknown',
      destination_app: rec.destination?.app ?? 'unknown',
      destination_version: rec.destination?.version ?? 'unknown',
      destination_service: rec.service,
      destination_service_name: rec.serviceName,
      destination_service_namespace: rec.serviceNamespace,
      response_flags: rec.flags,
      connection_security_policy: 'none',
    };
  }

  /**
   * Series already found, by the objects that fix their labels: endpoint,
   * then source workload, then status (see cachedSeries in
   * telemetry/exchange.ts). Weak on the endpoint, so a replaced routing
   * table's entries go with it.
   */
  readonly seriesByEndpoint = new WeakMap<object, Map<Peer | null, Map<number, HttpSeries>>>();

  /**
   * The series an exchange counts in, found by its labels. Callers on the hot
   * path keep what this returns (see telemetry/exchange.ts): building the key
   * string and hashing it costs as much as the rest of the accounting.
   */
  seriesFor(rec: Omit<RequestRecord, 'durationMs' | 'requestBytes' | 'responseBytes'>): HttpSeries {
    const key = `${rec.source?.workload}|${rec.source?.namespace}|${rec.destination?.workload}|${rec.destination?.version}|${rec.service}|${rec.protocol}|${rec.code}|${rec.grpcStatus}|${rec.flags}|${rec.reporter ?? ''}`;
    let s = this.series.get(key);
    if (!s) {
      const l: Record<string, string> = { ...this.labels(rec), request_protocol: rec.protocol, response_code: String(rec.code), grpc_response_status: rec.grpcStatus ?? '' };
      s = {
        labels: HTTP_LABELS.map((n) => `${n}="${escapeLabel(l[n] ?? '')}"`).join(','),
        flags: rec.flags,
        requests: 0,
        duration: new Float64Array(DURATION_BUCKETS_MS.length + 1),
        durationSum: 0,
        reqBytes: new Float64Array(SIZE_BUCKETS.length + 1),
        reqBytesSum: 0,
        resBytes: new Float64Array(SIZE_BUCKETS.length + 1),
        resBytesSum: 0,
      };
      this.series.set(key, s);
    }
    return s;
  }

  /** Counts one exchange in its series. */
  observe(s: HttpSeries, m: { durationMs: number; requestBytes: number; responseBytes: number }): void {
    s.requests++;
    s.duration[bucketIndex(DURATION_BUCKETS_MS, m.durationMs)]!++;
    s.durationSum += m.durationMs;
    s.reqBytes[bucketIndex(SIZE_BUCKETS, m.requestBytes)]!++;
    s.reqBytesSum += m.requestBytes;
    s.resBytes[bucketIndex(SIZE_BUCKETS, m.responseBytes)]!++;
    s.resBytesSum += m.responseBytes;
    if (s.flags !== '-') this.localReplies.labels(s.flags).inc();
  }

  /** Per destination service: requests, 5xx answers and the duration bucket counts (additive across processes). */
  summaryCounts(): SummaryCounts[] {
    const by = new Map<string, SummaryCounts>();
    for (const [key, s] of this.series) {
      const parts = key.split('|');
      const service = parts[4]!;
      const code = Number(parts[6]);
      let agg = by.get(service);
      if (!agg) {
        agg = { service, requests: 0, errors: 0, buckets: Array.from({ length: DURATION_BUCKETS_MS.length + 1 }, () => 0) };
        by.set(service, agg);
      }
      agg.requests += s.requests;
      if (code >= 500 || code === 0) agg.errors += s.requests;
      for (let i = 0; i < s.duration.length; i++) agg.buckets[i]! += s.duration[i]!;
    }
    return [...by.values()];
  }

  /**
   * Per destination service: requests, 5xx answers, and p50/p99 estimated
   * from the duration buckets (a bucket's upper bound, as Prometheus'
   * histogram_quantile would give without interpolation).
   */
  summary(): ServiceSummary[] {
    return summarize([this.summaryCounts()]);
  }

  /** The whole exposition: the HTTP series rendered here, then prom-client's registry. */
  async render(): Promise<string> {
    const out: string[] = [
      '# HELP istio_requests_total Requests handled by the proxy',
      '# TYPE istio_requests_total counter',
    ];
    for (const s of this.series.values()) out.push(`istio_requests_total{${s.labels}} ${s.requests}`);
    const hist = (name: string, help: string, bounds: number[], pick: (s: HttpSeries) => [Float64Array, number]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
      for (const s of this.series.values()) {
        const [counts, sum] = pick(s);
        let cum = 0;
        bounds.forEach((b, i) => {
          cum += counts[i]!;
          out.push(`${name}_bucket{${s.labels},le="${b}"} ${cum}`);
        });
        cum += counts[bounds.length]!;
        out.push(`${name}_bucket{${s.labels},le="+Inf"} ${cum}`, `${name}_sum{${s.labels}} ${sum}`, `${name}_count{${s.labels}} ${cum}`);
      }
    };
    hist('istio_request_duration_milliseconds', 'Request duration', DURATION_BUCKETS_MS, (s) => [s.duration, s.durationSum]);
    hist('istio_request_bytes', 'Request size (head and body)', SIZE_BUCKETS, (s) => [s.reqBytes, s.reqBytesSum]);
    hist('istio_response_bytes', 'Response size (head and body)', SIZE_BUCKETS, (s) => [s.resBytes, s.resBytesSum]);
    return `${out.join('\n')}\n${await this.registry.metrics()}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  tcpOpen(rec: TcpRecord): void {
    this.tcpOpened.inc({ ...this.labels({ ...rec, flags: '-' }) });
  }

  tcpClose(rec: TcpRecord, sent: number, received: number, flags = '-'): void {
    const l = this.labels({ ...rec, flags });
    this.tcpClosed.inc(l);
    this.tcpSent.inc(l, sent);
    this.tcpReceived.inc(l, received);
  }
}
