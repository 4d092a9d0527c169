// SPDX-License-Identifier: Apache-2.0
/**
 * The node agent's view of Kubernetes: Namespaces (which are captured) and
 * the Pods of this node (spec.nodeName), through informers. After any
 * change, and every few seconds while a pod's containers are still coming
 * up, it works out the captured pods with their cgroup and network
 * namespace and hands the whole list to the agent, which reconciles.
 */
import { CoreV1Api, type KubeConfig, type V1Namespace, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import { findKubepods, findPodCgroup, findPodNetns, podPidsFromProc } from './discover.ts';
import { Informer } from './informer.ts';
import { type CaptureSettings, DEFAULT_CAPTURE, decidePods } from './pods.ts';

export interface KubeWorkload {
  name: string;
  namespace: string;
  uid: string;
  netnsPath: string;
  cgroupPath: string;
  labels: Record<string, string>;
  identity: string;
  excludedPorts: number[];
  excludedCidrs: string[];
  inboundPorts: number[];
  addresses: string[];
}

export interface NotCaptured {
  name: string;
  namespace: string;
  reason: string;
}

export interface PodWatchOptions {
  kc: KubeConfig;
  node: string;
  /** The kubepods cgroup; default: found under cgroupRoot. */
  kubepodsCgroup?: string;
  cgroupRoot: string;
  procRoot: string;
  log: Logger;
  /** How often pods still waiting for their containers are looked at again. */
  retryMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
}

export class PodWatch {
  readonly namespaces: Informer<V1Namespace>;
  readonly pods: Informer<V1Pod>;
  private readonly opts: PodWatchOptions;
  private pending: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private started = false;
  /** Called with the full desired list after every change. */
  onWorkloads: (captured: KubeWorkload[], notCaptured: NotCaptured[]) => void = () => {};

  constructor(opts: PodWatchOptions) {
    this.opts = opts;
    const api = opts.kc.makeApiClient(CoreV1Api);
    const fieldSelector = `spec.nodeName=${opts.node}`;
    this.namespaces = new Informer<V1Namespace>({ name: 'namespaces', kc: opts.kc, path: '/api/v1/namespaces', list: () => api.listNamespace(), log: opts.log, ...(opts.backoff ? { backoff: opts.backoff } : {}) });
    this.pods = new Informer<V1Pod>({ name: 'pods', kc: opts.kc, path: '/api/v1/pods', list: () => api.listPodForAllNamespaces({ fieldSelector }), fieldSelector, log: opts.log, ...(opts.backoff ? { backoff: opts.backoff } : {}) });
    this.namespaces.onChange = () => this.schedule();
    this.pods.onChange = () => this.schedule();
  }

  /** The kubepods cgroup (where the datapath attaches): configured, or found. */
  kubepods(): string | undefined {
    return this.opts.kubepodsCgroup ?? findKubepods(this.opts.cgroupRoot);
  }

  /** Starts both informers; resolves when both have listed (only then is the list complete enough to prune by). */
  async start(): Promise<void> {
    this.namespaces.start();
    this.pods.start();
    await Promise.all([this.namespaces.synced, this.pods.synced]);
    this.started = true;
    this.emit();
  }

  /** Looks again now (the agent found a namespace path gone: a container restarted). */
  refresh(): void {
    this.schedule();
  }

  /** MeshSettings' capture label and default inbound ports; a change re-decides every pod. */
  setCapture(capture: CaptureSettings): void {
    if (capture.namespaceLabel === this.capture.namespaceLabel && capture.inboundPorts.join(',') === this.capture.inboundPorts.join(',')) return;
    this.capture = capture;
    if (this.started) this.schedule();
  }

  private capture: CaptureSettings = DEFAULT_CAPTURE;

  stop(): void {
    this.started = false;
    clearTimeout(this.pending);
    clearTimeout(this.retry);
    this.namespaces.stop();
    this.pods.stop();
  }

  /** Changes come in bursts (a relist is one event per object): one evaluation per burst. */
  private schedule(): void {
    if (!this.started) return;
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.emit(), 20);
  }

  /** The current desired state, from the informers' caches and the node's cgroups and /proc. */
  evaluate(): { captured: KubeWorkload[]; notCaptured: NotCaptured[]; waiting: boolean } {
    const captured: KubeWorkload[] = [];
    const notCaptured: NotCaptured[] = [];
    let waiting = false;
    const kubepods = this.kubepods();
    // Only when some pod's cgroup.procs is unreadable from here (another pid namespace): one /proc scan for all.
    let scan: Map<string, number[]> | undefined;
    const byUid = () => (scan ??= podPidsFromProc(this.opts.procRoot));
    for (const d of decidePods(this.namespaces.list(), this.pods.list(), this.opts.node, this.capture)) {
      const who = { name: d.name, namespace: d.namespace };
      if (!d.capture) {
        notCaptured.push({ ...who, reason: d.reason ?? 'not captured' });
        continue;
      }
      const cgroupPath = kubepods ? findPodCgroup(kubepods, d.uid) : undefined;
      if (!cgroupPath) {
        waiting = true;
        notCaptured.push({ ...who, reason: kubepods ? `no cgroup for pod uid ${d.uid} under ${kubepods} yet` : `no kubepods cgroup under ${this.opts.cgroupRoot}` });
        continue;
      }
      const netns = findPodNetns(cgroupPath, this.opts.procRoot, d.uid, byUid);
      if (!netns.path) {
        waiting = true;
        notCaptured.push({ ...who, reason: netns.problem ?? 'no network namespace found' });
        continue;
      }
      captured.push({
        ...who,
        uid: d.uid,
        cgroupPath,
        netnsPath: netns.path,
        labels: d.labels,
        identity: `spiffe://cluster.local/ns/${d.namespace}/sa/${d.serviceAccount}`,
        excludedPorts: d.excludedPorts,
        excludedCidrs: d.excludedCidrs,
        inboundPorts: d.inboundPorts,
        addresses: d.addresses,
      });
    }
    return { captured, notCaptured, waiting };
  }

  private emit(): void {
    clearTimeout(this.retry);
    const { captured, notCaptured, waiting } = this.evaluate();
    // A pod whose containers are starting has no processes yet: look again soon. And now and then
    // anyway: a container restart changes the pid its namespace path goes through.
    this.retry = setTimeout(() => this.emit(), waiting ? (this.opts.retryMs ?? 2000) : 30_000);
    this.retry.unref();
    this.onWorkloads(captured, notCaptured);
  }
}
