// SPDX-License-Identifier: Apache-2.0
/** What every connection of one proxy process shares: the routing table, the upstream pool, load balancers. */
import { type RoutingTable, emptyTable } from './routing/table.ts';
import type { AccessLog } from './telemetry/access-log.ts';
import { ProxyMetrics } from './telemetry/metrics.ts';
import { UpstreamPool } from './upstream/pool.ts';
import { Balancer } from './upstream/balancer.ts';
import { H2Upstreams } from './http2/upstream.ts';
import { type Admitter, localAdmitter } from './policy/node-limits.ts';

export class ProxyCore {
  /** Swapped whole on each config change; a request uses the table it started with. */
  table: RoutingTable = emptyTable();
  readonly pool = new UpstreamPool();
  readonly balancer = new Balancer();
  readonly h2 = new H2Upstreams();
  readonly metrics = new ProxyMetrics('source');
  constructor() {
    this.balancer.onEject = (service) => this.metrics.ejections.labels(service).inc();
  }

  /** Rate limits: this process's own buckets, or (in a proxy worker) credit from the node's (node-limits.ts). */
  admitter: Admitter = localAdmitter;

  /** Null: no access log (benchmarks); else sampled per MeshSettings. */
  accessLog: AccessLog | null = null;

  /** Swaps in a new table (the previous one's live counters carry over in buildTable). */
  setTable(t: RoutingTable): void {
    this.table = t;
  }
}
