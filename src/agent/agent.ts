// SPDX-License-Identifier: Apache-2.0
/**
 * The node agent: follows the mesh in Redis, keeps the proxy's routing table
 * and the datapath's maps in step with it, and opens the proxy's outbound
 * listener inside every captured workload's network namespace. Wiring and
 * lifecycle only: every mechanism lives in config/, datapath/ and proxy/.
 */
import { closeSync, existsSync, openSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { type Server as NetServer, Socket } from 'node:net';
import { AgentSync } from '../config/sync.ts';
import { redisConfigFromEnv } from '../config/redis.ts';
import { EbpfDatapath, type Interceptor, IptablesDatapath, MAX_NODE_ADDRESSES, dialInNetns, isNodeAddress, isPodAddress, nativeAddon, socketFd } from '../datapath/index.ts';
import { type Logger, childLogger } from '../log.ts';
import { startAdmin, startMetrics } from '../proxy/admin.ts';
import { ProxyCore } from '../proxy/core.ts';
import { buildTable } from '../proxy/routing/table.ts';
import { ProxyServer } from '../proxy/server.ts';
import { type SummaryCounts, summarize } from '../proxy/telemetry/metrics.ts';
import { mergeExpositions } from '../proxy/telemetry/merge.ts';
import { ProxyWorkers, type WorkerSettings, type WorkerStats } from '../proxy/workers.ts';
import { availableParallelism, networkInterfaces } from 'node:os';
import { AccessLog } from '../proxy/telemetry/access-log.ts';
import { loadKubeConfig } from '../kube/client.ts';
import { type NotCaptured, PodWatch } from '../kube/pod-watch.ts';
import { captureSettings } from '../kube/pods.ts';
import { cgroup2Root } from '../datapath/index.ts';
import { durationMs } from '../config/model/common.ts';
import type { AgentConfig } from './config.ts';
import type { DatapathState } from '../config/agents.ts';
import { type EbpfPlacement, checkAgentHost } from './preflight.ts';

type Spec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- validated by the config layer
/** A captured workload: from the file, or a pod from the Kubernetes API (with its uid). */
export type Workload = AgentConfig['workloads'][number] & { uid?: string };
const keyOf = (w: { namespace: string; name: string }) => `${w.namespace}/${w.name}`;

export class Agent {
  readonly config: AgentConfig;
  readonly core = new ProxyCore();
  readonly proxy: ProxyServer;
  readonly sync: AgentSync;
  datapath: Interceptor | null = null;
  private admin: Server | null = null;
  private readonly listeners = new Map<string, { servers: NetServer[]; identity: string; inbound?: { v4?: number; v6?: number }; nsFd?: number }>();
  /** Per workload: enrolled, or why not (shown by kernmesh status). */
  readonly enrolment = new Map<string, { ok: boolean; reason?: string }>();
  /** The workloads wanted now: the file's, plus the pods the Kubernetes watch found. */
  private workloads: Workload[] = [];
  private notCaptured: NotCaptured[] = [];
  podWatch: PodWatch | null = null;
  private metricsServer: Server | null = null;
  /** Proxy worker processes (proxyWorkers > 0), and what they last said of their traffic and connections. */
  workers: ProxyWorkers | null = null;
  private workerCounts: SummaryCounts[][] = [];
  private workerStats: WorkerStats[] = [];
  /** Workload changes are applied one at a time, in order. */
  private reconciling: Promise<void> = Promise.resolve();
  private heartbeatStarted = false;
  private drained = false;
  private statusTimer: NodeJS.Timeout | undefined;
  private lastTraffic = new Map<string, { requests: number; at: number; rps: number }>();
  /** The routing table's claim conflicts already logged (each is logged once, when it appears). */
  private loggedConflicts = new Set<string>();
  private readonly log: Logger;

  /** Where the datapath attaches (ebpf mode), as checkAgentHost found it at start. */
  private placement: EbpfPlacement | null = null;
  /** The configuration's name in messages: the file the agent was started with. */
  private readonly configSource: string;

  /** source: where the configuration came from (its file), named in messages about it. */
  constructor(config: AgentConfig, logger: Logger = childLogger('agent', { node: config.node }), source = 'the agent configuration') {
    this.config = config;
    this.configSource = source;
    this.log = logger;
    this.proxy = new ProxyServer(this.core, { idleTimeoutMs: durationMs(config.proxyIdleTimeout) });
    if (config.zone) this.core.balancer.zone = config.zone;
    const redis = { ...redisConfigFromEnv(), ...Object.fromEntries(Object.entries(config.redis).filter(([, v]) => v !== undefined)) };
    this.sync = new AgentSync({ node: config.node, mode: config.mode, redis, cachePath: config.cachePath, logger: this.log.child({ part: 'sync' }) });
  }

  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      // Whatever did start is stopped again: a failed start leaves no connection or timer behind.
      await this.stop().catch(() => {});
      throw err;
    }
  }

  private readonly onChangeListener = (view: { version: number; objects: ReadonlyMap<string, { version: number; object: { kind: string; spec: Spec } }> }) => this.onChange(view);

  private async startParts(): Promise<void> {
    // The host first: a cgroup or pin directory the configuration names wrongly stops the agent
    // before it has synced, reported to Redis or written its cache.
    if (this.config.kubernetes.enabled) {
      const k = this.config.kubernetes;
      this.podWatch = new PodWatch({
        kc: loadKubeConfig(k.kubeconfig ? { kubeconfig: k.kubeconfig } : {}),
        node: this.config.node,
        cgroupRoot: k.cgroupRoot ?? cgroup2Root(),
        procRoot: k.procRoot,
        ...(k.kubepodsCgroup ? { kubepodsCgroup: k.kubepodsCgroup } : {}),
        log: this.log.child({ part: 'kube' }),
      });
    }
    this.placement = checkAgentHost(this.config, this.configSource);

    // Config next: the proxy must know the mesh before it takes a connection.
    this.sync.on('change', this.onChangeListener);
    await this.sync.start();
    this.onChange(this.sync.current() as never);

    const n = this.config.proxyWorkers === 'auto' ? availableParallelism() : this.config.proxyWorkers;
    if (n > 0) {
      // This process's table holds the node's rate-limit buckets: the workers admit from credit it grants.
      this.workers = await ProxyWorkers.start(n, () => this.core.table);
      this.workers.onRestart = (info) => (info.error ? this.log.error(info, 'a proxy worker died and could not be replaced') : this.log.warn(info, 'a proxy worker died and was replaced'));
      // The zone and the access log before the table and any listener: no worker serves a connection without them.
      await this.workers.configure(this.workerSettings());
      const view = this.sync.current() as { version: number; objects: ReadonlyMap<string, unknown> };
      await this.workers.setObjects(view.version, [...view.objects.values()] as never);
    }
    if (this.config.mode !== 'off') {
      // Opening reuses pinned maps and links: a restarted agent attaches nothing twice.
      this.datapath = this.config.mode === 'ebpf' ? await this.openEbpf() : new IptablesDatapath({ outboundPort: this.config.outboundPort });
      this.meshApplied = this.sync.get('MeshSettings', 'mesh')?.version ?? 0;
    }
    this.sync.reportExtra = () => this.statusReport();
    const metrics = () => this.metricsText();
    if (this.config.adminPort) this.admin = await startAdmin(this.core, this.config.adminPort, '127.0.0.1', { drain: () => this.drain(), metrics });
    if (this.config.metricsPort !== undefined) this.metricsServer = await startMetrics(this.core, this.config.metricsPort, '0.0.0.0', metrics);

    if (this.podWatch) {
      this.podWatch.setCapture(captureSettings(this.meshSettings()));
      // Nothing is applied (and so nothing pruned) before both informers have listed: until then the
      // pinned state stays as the last agent left it, and with no heartbeat its pods fail open.
      this.podWatch.onWorkloads = (captured, notCaptured) => {
        this.notCaptured = notCaptured;
        void this.setWorkloads([...this.config.workloads, ...captured]);
      };
      void this.podWatch.start().catch((err) => this.log.error({ err }, 'the Kubernetes watch could not start'));
    } else {
      await this.setWorkloads(this.config.workloads);
    }
    await this.refreshDatapathSnapshot();
    this.statusTimer = setInterval(() => {
      void this.refreshWorkers().then(() => this.sampleTraffic());
      void this.refreshDatapathSnapshot();
    }, 2000);
    this.statusTimer.unref();
    this.log.info({ mode: this.config.mode, workloads: this.config.workloads.length, kubernetes: this.config.kubernetes.enabled }, 'agent started');
  }

  /** This process's metrics, plus every worker's, added up series by series. */
  async metricsText(): Promise<string> {
    const own = await this.core.metrics.render();
    return this.workers ? mergeExpositions([own, ...(await this.workers.metrics())]) : own;
  }

  /** The workers' traffic counts and connections, for the status report (which is built synchronously). */
  async refreshWorkers(): Promise<void> {
    if (!this.workers) return;
    try {
      [this.workerCounts, this.workerStats] = await Promise.all([this.workers.summaries(), this.workers.stats()]);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'a proxy worker did not answer');
    }
  }

  /** Per service, across this process and its workers. */
  private trafficSummary() {
    return summarize([this.core.metrics.summaryCounts(), ...this.workerCounts]);
  }

  /** Resolves once the Kubernetes watch has listed and the first reconcile is done (at once without Kubernetes). */
  async ready(): Promise<void> {
    if (this.podWatch) await Promise.all([this.podWatch.namespaces.synced, this.podWatch.pods.synced]);
    await new Promise((r) => setTimeout(r, 50));
    await this.reconciling;
  }

  /**
   * Makes the agent serve exactly these workloads: listeners opened for new
   * ones before they are intercepted, interception released before the
   * listeners of departed ones close. Serialised: calls apply in order.
   */
  setWorkloads(list: Workload[]): Promise<void> {
    const run = this.reconciling.then(() => this.reconcile(list));
    this.reconciling = run.catch((err) => this.log.error({ err }, 'reconcile failed'));
    return run;
  }

  private async reconcile(list: Workload[]): Promise<void> {
    if (this.drained) return;
    this.workloads = list;
    this.enrolment.clear();
    // A workload that cannot be enrolled (its pod gone, a bad path) is reported, not fatal.
    let stalePath = false;
    for (const w of list) {
      const why = !existsSync(w.netnsPath) ? `network namespace ${w.netnsPath} does not exist` : !existsSync(w.cgroupPath) ? `cgroup ${w.cgroupPath} does not exist` : undefined;
      if (why && w.uid) stalePath = true;
      this.enrolment.set(keyOf(w), why ? { ok: false, reason: why } : { ok: true });
    }
    // A pod's namespace path goes through one of its processes: if that one ended, look the pod up again.
    if (stalePath) setTimeout(() => this.podWatch?.refresh(), 500).unref();
    try {
      // Listeners before interception: a workload is only steered to a proxy that is listening for it.
      for (const w of this.goodWorkloads()) {
        const have = this.listeners.get(keyOf(w));
        const identity = identityOf(w);
        if (have && have.identity === identity) continue;
        if (have) this.closeListeners(keyOf(w));
        try {
          await this.openListeners(w, identity);
        } catch (err) {
          this.enrolment.set(keyOf(w), { ok: false, reason: `listener: ${(err as Error).message}` });
        }
      }
      if (this.datapath) {
        await this.applyEach();
        // Departed workloads' inbound first: a reused pod address then belongs to its new pod alone.
        const wanted = new Set(this.goodWorkloads().map(keyOf));
        if (this.datapath instanceof EbpfDatapath) for (const key of this.listeners.keys()) if (!wanted.has(key)) this.datapath.releaseInbound(key);
        this.applyInbound();
        if (!this.heartbeatStarted && this.datapath instanceof EbpfDatapath) {
          this.heartbeatStarted = true;
          this.datapath.startHeartbeat(1000);
        }
      }
    } finally {
      // Listeners of workloads no longer wanted close after their interception went (or failed to go):
      // an open listener would keep a deleted pod's network namespace alive.
      const wanted = new Set(this.goodWorkloads().map(keyOf));
      for (const key of [...this.listeners.keys()]) if (!wanted.has(key)) this.closeListeners(key);
    }
  }

  /**
   * Applies the good workloads; when the datapath refuses one (its namespace
   * vanished meanwhile, the maps are full), that one is marked failed with
   * the reason and the rest are applied without it, so one pod never holds
   * back the others.
   */
  private async applyEach(): Promise<void> {
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        await this.applyWorkloads();
        this.applied.clear();
        for (const w of this.goodWorkloads()) this.applied.add(keyOf(w));
        return;
      } catch (err) {
        const message = (err as Error).message;
        const named = /^workload ([^:]+):/.exec(message)?.[1];
        const culprits = named ? [named] : this.goodWorkloads().map(keyOf).filter((k) => !this.applied.has(k));
        // Nothing new to blame (a settings change failed): leave it to the next reconcile.
        if (culprits.length === 0 || !culprits.every((k) => this.enrolment.has(k))) throw err;
        for (const k of culprits) this.enrolment.set(k, { ok: false, reason: message });
        this.log.warn({ workloads: culprits, err: message }, 'workloads left out of the datapath');
      }
    }
  }

  /** Workloads the datapath holds after the last successful apply (the ones to keep when new ones overflow it). */
  private readonly applied = new Set<string>();

  /** Inbound interception for every enrolled workload that asked for it (the listener is open already). */
  private applyInbound(): void {
    const dp = this.datapath;
    if (!(dp instanceof EbpfDatapath)) return;
    for (const w of this.goodWorkloads()) {
      const listeners = this.listeners.get(keyOf(w))?.inbound;
      if (!listeners) continue;
      try {
        dp.setInbound(keyOf(w), { netnsPath: w.netnsPath, addresses: w.addresses, ports: w.inboundPorts, listeners });
      } catch (err) {
        this.log.error({ err: (err as Error).message, workload: keyOf(w) }, 'inbound interception failed');
      }
    }
  }

  private wantsInbound(w: Workload): boolean {
    return this.config.mode === 'ebpf' && w.inboundPorts.length > 0 && w.addresses.length > 0;
  }

  private closeListeners(key: string): void {
    // Interception first, then the listener: an arriving connection is never handed to a closed socket.
    if (this.listeners.get(key)?.inbound && this.datapath instanceof EbpfDatapath) this.datapath.releaseInbound(key);
    const entry = this.listeners.get(key);
    for (const s of entry?.servers ?? []) s.close();
    if (entry?.nsFd !== undefined) closeSync(entry.nsFd);
    this.listeners.delete(key);
    // The workers' copies too: the socket (and the pod's namespace) is only gone when the last copy closes.
    this.workers?.release(key).catch((err) => this.log.warn({ err: (err as Error).message, key }, 'a worker could not close a listener'));
  }

  /**
   * Stops steering new connections to this node's proxy and removes the
   * programs and pins (the DaemonSet's preStop): connections already in the
   * proxy finish; new ones go straight to their destination. Nothing undoes
   * it in this process: only a restarted agent attaches again. The report
   * says "drained" from here on, so status shows the node as not intercepting.
   */
  async drain(): Promise<void> {
    this.drained = true;
    // Drained from here on, even if closing fails half-way: nothing in this process steers connections again.
    this.drainedAt ??= Date.now();
    await this.reconciling;
    this.podWatch?.stop();
    const dp = this.datapath;
    this.datapath = null;
    if (dp instanceof EbpfDatapath) {
      dp.stopHeartbeat();
      try {
        dp.heartbeat(0n);
      } catch {
        /* already closed */
      }
    }
    try {
      await dp?.close({ detach: true });
    } finally {
      // Said at once: kernmesh status must not show this node intercepting until the next periodic report.
      await this.sync.report();
    }
    this.log.info('drained: interception removed, programs detached and pins removed; only a restarted agent intercepts again');
  }

  /** When drain() ran (ms): from then on this agent intercepts nothing until it is restarted. */
  private drainedAt: number | null = null;

  private async openEbpf(): Promise<EbpfDatapath> {
    // Where to attach was settled by checkAgentHost: the configured cgroup, or kubepods on Kubernetes.
    const { attachCgroup, proxyCgroup } = this.placement ?? checkAgentHost(this.config, this.configSource)!;
    return EbpfDatapath.open({
      pinDir: this.config.pinDir,
      attachCgroup,
      outboundPort: this.config.outboundPort,
      ...(proxyCgroup ? { proxyCgroup } : {}),
    });
  }

  private meshSettings(): Spec {
    return (this.sync.get('MeshSettings', 'mesh')?.object.spec as Spec | undefined) ?? {};
  }

  private async applyWorkloads(): Promise<void> {
    if (!this.datapath) return;
    const mesh = this.meshSettings();
    const capture = (mesh.capture as Spec | undefined) ?? {};
    await this.datapath.apply({
      workloads: this.goodWorkloads().map((w) => ({
        name: keyOf(w),
        netnsPath: w.netnsPath,
        cgroupPath: w.cgroupPath,
        excludedPorts: w.excludedPorts,
        excludedCidrs: w.excludedCidrs,
        // The pod's addresses make the proxy's connections to it same-node spliced; one that cannot be
        // (link-local, say) is left out rather than keep the pod out of the datapath.
        addresses: w.addresses.filter(isPodAddress),
      })),
      excludedPorts: (capture.excludedPorts as number[]) ?? [],
      excludedCidrs: (capture.excludedCidrs as string[]) ?? [],
      failMode: (mesh.failMode as 'open' | 'closed') ?? 'open',
      nodeAddresses: this.nodeAddresses(),
    });
  }

  /**
   * The node's own addresses: kubelet's probes come from one of them. "auto"
   * reads them at each apply (the agent runs in the node's network
   * namespace), so an address added later is picked up by the next one.
   */
  private nodeAddresses(): string[] {
    const configured = this.config.nodeAddresses;
    if (configured !== 'auto') return configured;
    const all = [...new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)).filter(isNodeAddress))];
    if (all.length <= MAX_NODE_ADDRESSES) return all;
    // More than the map holds: keep capturing pods (a full map would fail the whole apply); probes
    // from the addresses left out go through the proxy, as before this map existed.
    this.log.warn({ addresses: all.length, kept: MAX_NODE_ADDRESSES }, 'this node has more addresses than km_nodeaddr_v1 holds: list the ones kubelet uses in nodeAddresses');
    return all.slice(0, MAX_NODE_ADDRESSES);
  }

  private goodWorkloads(): Workload[] {
    return this.workloads.filter((w) => this.enrolment.get(keyOf(w))?.ok !== false);
  }

  /** Map occupancy needs a dump (asynchronous): kept fresh here, read by the report. */
  private async refreshDatapathSnapshot(): Promise<void> {
    const dp = this.datapath;
    if (!(dp instanceof EbpfDatapath)) return;
    try {
      const maps: Record<string, { entries: number; capacity: number }> = {};
      for (const m of ['km_capture_v1', 'km_xport_v1', 'km_odst_tp_v1', 'km_socks_v1', 'km_local_v1'] as const) {
        maps[m] = { entries: (await dp.dump(m)).length, capacity: dp.mapInfo(m).maxEntries };
      }
      this.mapOccupancy = maps;
    } catch (err) {
      this.mapOccupancy = { error: (err as Error).message };
    }
  }

  private mapOccupancy: Record<string, unknown> = {};

  /**
   * Whether this node's connections are intercepted now, for status:
   * intercepting; starting (programs attached, the proxy not yet declared
   * alive: captured pods' connects fail open or closed as the mesh says);
   * drained (detached by `kernmesh drain`, until the agent restarts); off
   * (mode off); stopping (the agent is shutting down).
   */
  private datapathState(): DatapathState {
    if (this.drainedAt !== null) return 'drained';
    if (this.config.mode === 'off') return 'off';
    if (this.datapath instanceof EbpfDatapath && !this.heartbeatStarted) return 'starting';
    return this.datapath ? 'intercepting' : 'stopping';
  }

  /** The datapath as status shows it: counters read now (a cheap syscall), occupancy from the last refresh. */
  private datapathStatus(): Record<string, unknown> {
    const dp = this.datapath;
    const state = { state: this.datapathState(), ...(this.drainedAt !== null ? { drainedAt: this.drainedAt } : {}) };
    if (!(dp instanceof EbpfDatapath)) return { mode: this.config.mode, ...state };
    try {
      const { error, ...maps } = this.mapOccupancy as { error?: string };
      return {
        mode: 'ebpf',
        ...state,
        attachCgroup: dp.attachCgroup,
        programs: dp.programIds(),
        failMode: dp.currentSettings().failMode,
        maps,
        counters: Object.fromEntries(Object.entries(dp.counters()).map(([k, v]) => [k, Number(v)])),
        ...(error ? { error } : {}),
      };
    } catch (err) {
      return { mode: 'ebpf', ...state, error: (err as Error).message };
    }
  }

  /** Request rates over the status timer's fixed 2 s window (reports come at other moments too). */
  private sampleTraffic(): void {
    const now = Date.now();
    for (const x of this.trafficSummary()) {
      const prev = this.lastTraffic.get(x.service);
      const rps = prev && now > prev.at ? ((x.requests - prev.requests) * 1000) / (now - prev.at) : 0;
      this.lastTraffic.set(x.service, { requests: x.requests, at: now, rps: Math.round(rps * 10) / 10 });
    }
  }

  /** What kernmesh status shows of this node, sent with every report. */
  private statusReport(): Record<string, unknown> {
    const traffic = this.trafficSummary().map((x) => ({
      ...x,
      p50Ms: Number.isFinite(x.p50Ms) ? x.p50Ms : null,
      p99Ms: Number.isFinite(x.p99Ms) ? x.p99Ms : null,
      rps: this.lastTraffic.get(x.service)?.rps ?? 0,
      successRate: x.requests ? Math.round(((x.requests - x.errors) / x.requests) * 1000) / 1000 : 1,
    }));
    return {
      // Status says how to restart the agent after a drain: on Kubernetes or not.
      kubernetes: this.config.kubernetes.enabled,
      datapath: this.datapathStatus(),
      proxy: {
        activeConnections: this.proxy.activeConnections + this.workerStats.reduce((a, w) => a + w.active, 0),
        connectionsTotal: this.proxy.connectionsTotal + this.workerStats.reduce((a, w) => a + w.connectionsTotal, 0),
        tableVersion: this.core.table.version,
        // Kept short: a report is one Redis value per node, rewritten every few seconds.
        conflicts: this.core.table.conflicts.slice(0, 20),
        workers: this.workers?.pids.length ?? 0,
      },
      workloads: [
        ...this.workloads.map((w) => ({ name: w.name, namespace: w.namespace, ...(this.config.mode === 'off' ? { ok: false, reason: 'the agent runs with mode off' } : this.drainedAt !== null ? { ok: false, reason: 'its node was drained: connections are no longer intercepted' } : this.enrolment.get(keyOf(w))) })),
        ...this.notCaptured.map((n) => ({ name: n.name, namespace: n.namespace, ok: false, reason: n.reason })),
      ],
      traffic,
    };
  }

  /** The outbound listener inside the workload's netns, on IPv4 and (where the pod has IPv6) IPv6 loopback. */
  private async openListeners(w: Workload, identity: string): Promise<void> {
    const source = { workload: w.labels.app ?? w.name, namespace: w.namespace, app: w.labels.app ?? 'unknown', ...(w.labels.version ? { version: w.labels.version } : {}), ...(w.identity ? { identity: w.identity } : {}) };
    const originalDst = (s: Socket) => nativeAddon().originalDst(socketFd(s));
    const servers: NetServer[] = [];
    let inbound: { v4?: number; v6?: number } | undefined;
    let nsFd: number | undefined;
    try {
      for (const host of ['127.0.0.1', '::1']) {
        let fd: number;
        try {
          fd = nativeAddon().listenInNetns(w.netnsPath, host, this.config.outboundPort);
        } catch (err) {
          // A pod (or node) without IPv6 has no ::1: it cannot make IPv6 connects to steer either.
          if (host === '::1' && ['EADDRNOTAVAIL', 'EAFNOSUPPORT'].includes((err as { code?: string }).code ?? '')) continue;
          throw err;
        }
        const server = await this.proxy.listen({ fd }, { originalDst, source });
        servers.push(server);
        // Every worker accepts on the socket too, so the kernel spreads the pod's connections over the
        // cores. This process keeps its copy (and takes a share): a worker that dies is replaced and
        // handed the socket again from here, and meanwhile nothing is left unserved.
        await this.workers?.adopt(keyOf(w), server, { source, originalDst: true });
      }
      if (this.wantsInbound(w)) {
        // The inbound listeners: every address of the pod's netns (per family it has), handed connections by the datapath.
        // The application is dialled through a namespace fd held here: the path given goes through a pid, which a
        // container restart ends (or hands to another pod's process).
        nsFd = openSync(w.netnsPath, 'r');
        const nsPath = `/proc/${process.pid}/fd/${nsFd}`;
        inbound = {};
        const options = { inbound: { workload: source, dial: dialInNetns(nsPath) } };
        for (const [family, host] of [['v4', '0.0.0.0'], ['v6', '::']] as const) {
          if (!w.addresses.some((a) => a.includes(':') === (family === 'v6'))) continue;
          const fd = nativeAddon().listenInNetns(w.netnsPath, host, this.config.inboundPort);
          inbound[family] = fd;
          servers.push(await this.proxy.listen({ fd }, options));
          await this.workers?.adopt(keyOf(w), servers.at(-1)!, { inbound: { workload: source, netnsPath: nsPath } });
        }
      }
    } catch (err) {
      for (const s of servers) s.close();
      if (nsFd !== undefined) closeSync(nsFd);
      await this.workers?.release(keyOf(w)).catch(() => {});
      throw err;
    }
    this.listeners.set(keyOf(w), { servers, identity, ...(inbound ? { inbound } : {}), ...(nsFd !== undefined ? { nsFd } : {}) });
  }

  private onChange(view: { version: number; objects: ReadonlyMap<string, { version: number; object: { kind: string; spec: Spec } }> }): void {
    this.core.setTable(buildTable(view.version, view.objects.values() as never, this.core.table));
    this.logConflicts();
    this.workers?.setObjects(view.version, [...view.objects.values()] as never).catch((err) => this.log.error({ err }, 'a proxy worker did not take the new table'));
    const sampling = (this.meshSettings().accessLog as Spec | undefined)?.sampling as number | undefined;
    if (sampling !== undefined && sampling > 0) this.core.accessLog ??= new AccessLog(childLogger('access'), sampling);
    if (this.core.accessLog && sampling !== undefined) this.core.accessLog.sampling = sampling;
    this.workers?.configure(this.workerSettings()).catch((err) => this.log.error({ err }, 'a proxy worker did not take the new settings'));
    // Fail mode and exclusions come from MeshSettings: the datapath follows them when it changes.
    const meshVersion = this.sync.get('MeshSettings', 'mesh')?.version ?? 0;
    // Which namespaces are captured, and pods' default inbound ports, come from MeshSettings too.
    this.podWatch?.setCapture(captureSettings(this.meshSettings()));
    if (this.datapath && meshVersion !== this.meshApplied) {
      this.meshApplied = meshVersion;
      this.applyWorkloads().catch((err) => this.log.error({ err }, 'could not apply mesh settings to the datapath'));
    }
  }

  private meshApplied = -1;

  /** Two services claiming one VIP:port or host: said once, when it appears (the table is rebuilt often). */
  private logConflicts(): void {
    const now = new Set<string>();
    for (const c of this.core.table.conflicts) {
      const id = `${c.claim} ${c.kept} ${c.ignored}`;
      now.add(id);
      if (!this.loggedConflicts.has(id)) this.log.warn(c, `two services claim ${c.claim}: routed to ${c.kept} (first by namespace/name), not ${c.ignored}; give one of them another address, port or host`);
    }
    this.loggedConflicts = now;
  }

  /** What the workers' ProxyCores need beside the table, as this process's own core has it. */
  private workerSettings(): WorkerSettings {
    return { ...(this.core.balancer.zone ? { zone: this.core.balancer.zone } : {}), accessLogSampling: this.core.accessLog?.sampling ?? 0, idleTimeoutMs: this.proxy.idleTimeoutMs };
  }

  /**
   * Stops in the order that never leaves a pod steered to a closed port: the
   * proxy is declared dead first (so connects fail open or closed, as the
   * mesh says), then it stops listening, then the datapath and the sync.
   */
  async stop(options: { detach?: boolean } = {}): Promise<void> {
    clearInterval(this.statusTimer);
    this.drained = true;
    this.podWatch?.stop();
    await this.reconciling;
    this.sync.off('change', this.onChangeListener);
    if (this.datapath instanceof EbpfDatapath) {
      this.datapath.stopHeartbeat();
      try {
        this.datapath.heartbeat(0n);
      } catch {
        /* already closed */
      }
    }
    await this.proxy.close();
    // The workers go as a whole (their copies of the listeners with them).
    const workers = this.workers;
    this.workers = null;
    for (const key of [...this.listeners.keys()]) this.closeListeners(key);
    await workers?.stop();
    if (this.admin) await new Promise((r) => this.admin!.close(r));
    if (this.metricsServer) await new Promise((r) => this.metricsServer!.close(r));
    await this.datapath?.close(options);
    this.datapath = null;
    // Detaching means leaving the node for good (uninstall, drain): the report goes too.
    await this.sync.stop({ forget: options.detach === true });
  }
}

/**
 * A listener stays as long as this does not change: a pod recreated under
 * the same name (new uid), or a sandbox recreated under the same uid (new
 * network namespace), gets new ones. The path is not part of it: it goes
 * through a pid, which changes when a container restarts.
 */
function identityOf(w: Workload): string {
  let ns = w.netnsPath;
  try {
    ns = String(statSync(w.netnsPath, { bigint: true }).ino);
  } catch {
    /* gone: the path then */
  }
  // What the inbound listeners depend on too: a pod that gets its addresses or the annotation later gets them then.
  return `${w.uid ?? ''}/${ns}/${w.addresses.join(',')}/${w.inboundPorts.join(',')}`;
}

