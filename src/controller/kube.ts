// SPDX-License-Identifier: Apache-2.0
/**
 * The controller on Kubernetes: Services, EndpointSlices and Pods (for the
 * labels behind each endpoint) through informers; the replica holding the
 * coordination.k8s.io Lease writes the mesh's Service and Endpoints objects
 * to Redis. Changes are coalesced (a burst of EndpointSlice updates is one
 * write), leadership is checked right before every write, and a failed
 * write is retried soon after.
 */
import { CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice, type V1Pod, type V1Service } from '@kubernetes/client-node';
import type { MeshStore } from '../config/store.ts';
import type { Logger } from '../log.ts';
import { Informer } from '../kube/informer.ts';
import { LeaseLeader } from '../kube/lease.ts';
import { meshObjectsFor } from '../kube/mesh-objects.ts';
import { OwnedSync } from './owned.ts';

export interface KubeControllerOptions {
  kc: KubeConfig;
  store: MeshStore;
  identity: string;
  leaseNamespace: string;
  leaseName?: string;
  log: Logger;
  lease?: { leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  /** Coalescing window for changes. */
  debounceMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
}

export class KubeController {
  readonly services: Informer<V1Service>;
  readonly slices: Informer<V1EndpointSlice>;
  readonly pods: Informer<V1Pod>;
  readonly leader: LeaseLeader;
  private readonly owned: OwnedSync;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private pending: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopping = false;
  synced = false;
  syncs = 0;
  writes = 0;
  lastError: string | undefined;

  constructor(o: KubeControllerOptions) {
    this.log = o.log;
    this.debounceMs = o.debounceMs ?? 50;
    const core = o.kc.makeApiClient(CoreV1Api);
    const discovery = o.kc.makeApiClient(DiscoveryV1Api);
    const common = { kc: o.kc, log: o.log, ...(o.backoff ? { backoff: o.backoff } : {}) };
    this.services = new Informer<V1Service>({ ...common, name: 'services', path: '/api/v1/services', list: () => core.listServiceForAllNamespaces() });
    this.slices = new Informer<V1EndpointSlice>({ ...common, name: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', list: () => discovery.listEndpointSliceForAllNamespaces() });
    this.pods = new Informer<V1Pod>({ ...common, name: 'pods', path: '/api/v1/pods', list: () => core.listPodForAllNamespaces() });
    for (const i of [this.services, this.slices, this.pods]) i.onChange = () => this.schedule();
    this.owned = new OwnedSync(o.store, 'kubernetes');
    this.leader = new LeaseLeader({ kc: o.kc, namespace: o.leaseNamespace, name: o.leaseName ?? 'kernmesh-controller', identity: o.identity, log: o.log, ...o.lease });
    this.leader.onChange = (leading) => {
      // A new term starts from what Redis holds, not from what an earlier term wrote.
      this.owned.reset();
      if (leading) this.schedule(0);
    };
  }

  start(): void {
    for (const i of [this.services, this.slices, this.pods]) i.start();
    void Promise.all([this.services.synced, this.slices.synced, this.pods.synced]).then(() => {
      this.synced = true;
      this.schedule(0);
    });
    this.leader.start();
    // A periodic pass retries what failed (Redis away) and, reading Redis afresh, repairs anything written
    // behind this replica's back (a late write from an earlier leader).
    this.resync = setInterval(() => {
      this.owned.reset();
      this.schedule(0);
    }, 30_000);
    this.resync.unref();
  }

  private schedule(delay = this.debounceMs): void {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => void this.syncNow(), delay);
  }

  /** One pass: the mesh objects for every Service, written if this replica leads. Passes never overlap. */
  syncNow(): Promise<void> {
    this.running = this.running.then(() => this.pass());
    return this.running;
  }

  private async pass(): Promise<void> {
    // Until every informer has listed, a Service missing from the cache may just not be listed yet: never delete on that.
    if (this.stopping || !this.synced || !this.leader.isLeading()) return;
    try {
      const slices = this.slices.list();
      const podLabels = (ns: string, name: string) => this.pods.get(name, ns)?.metadata?.labels;
      const want = this.services.list().flatMap((s) => meshObjectsFor(s, slices, podLabels));
      this.writes += await this.owned.sync(want, () => !this.stopping && this.leader.isLeading());
      this.syncs++;
      this.lastError = undefined;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error({ err: this.lastError }, 'writing services to the mesh failed; retrying');
      this.schedule(1000);
    }
  }

  async stop(options: { release?: boolean } = {}): Promise<void> {
    clearTimeout(this.pending);
    clearInterval(this.resync);
    for (const i of [this.services, this.slices, this.pods]) i.stop();
    // The pass in flight finishes before the lease is handed back: no write lands after a successor took over.
    this.stopping = true;
    await this.running;
    await this.leader.stop({ release: options.release ?? true });
  }
}
