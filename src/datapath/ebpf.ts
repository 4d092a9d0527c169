// SPDX-License-Identifier: Apache-2.0
/**
 * eBPF interception: loads the programs, attaches them under one cgroup with
 * pinned links, and reconciles the desired state into the maps.
 *
 * Restart-safe: maps and links are pinned under pinDir; a new agent reuses
 * them (switching the links to its freshly loaded programs in place), so
 * established spliced connections keep flowing and nothing is attached twice.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KmError } from '../errors.ts';
import { applyOps } from './apply-ops.ts';
import { type Counters, type Settings, decodeSettings, decodeStats, encodeCaptureKey, encodeInboundKey, encodeSettings, parseCidr } from './codec.ts';
import { type DesiredStateInput, type Workload, parseDesired } from './desired.ts';
import { type EbpfOptions, parseEbpfOptions } from './ebpf-options.ts';
import { cgroupId, ownCgroup } from './host.ts';
import type { ApplyOptions, ApplyResult, Interceptor } from './interceptor.ts';
import { defaultLockPath, releaseLock, takeLock } from './lock.ts';
import { type MapName, type NativeDatapath, type ProgramName, addon } from './native.ts';
import { checkAttachCgroup, checkPinDir, isUnder, removeEmptyDir } from './pins.ts';
import { type MapContents, type PlannedMap, type ResolvedWorkload, emptyContents, formatPlan, planMaps } from './planner.ts';

export type { EbpfOptions } from './ebpf-options.ts';

const CGROUP_PROGRAMS: ProgramName[] = ['km_connect4', 'km_connect6', 'km_sockops', 'km_getsockopt'];
const PLANNED_MAPS: PlannedMap[] = ['km_capture_v1', 'km_xport_v1', 'km_xcidr4_v1', 'km_xcidr6_v1', 'km_local_v1', 'km_nodeaddr_v1'];
const SETTINGS_KEY = Buffer.alloc(4);
/** Maps earlier versions pinned under another layout (km_stats_v1: before the same-node counters; v2: before the inbound ones). */
const RETIRED_PINS = ['km_stats_v1', 'km_stats_v2'];

export class EbpfDatapath implements Interceptor {
  readonly mode = 'ebpf' as const;
  readonly pinDir: string;
  readonly attachCgroup: string;
  /** Links reused from a previous agent, by program (empty on a fresh attach). */
  readonly reusedLinks: ProgramName[];
  private native: NativeDatapath | undefined;
  private settings: Settings;
  private lockFd: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** apply() calls run one after another: ids and prunes are computed from what the previous one wrote. */
  private queue: Promise<unknown> = Promise.resolve();

  private readonly lockPath: string;

  private constructor(native: NativeDatapath, pinDir: string, attachCgroup: string, settings: Settings, lockFd: number, lockPath: string, reused: ProgramName[]) {
    this.native = native;
    this.pinDir = pinDir;
    this.attachCgroup = attachCgroup;
    this.settings = settings;
    this.lockFd = lockFd;
    this.lockPath = lockPath;
    this.reusedLinks = reused;
  }

  static async open(options: EbpfOptions): Promise<EbpfDatapath> {
    const cfg = parseEbpfOptions(options);
    const pinDir = resolve(cfg.pinDir);
    const attachCgroup = resolve(cfg.attachCgroup);
    checkAttachCgroup(attachCgroup);
    checkPinDir(pinDir);
    const proxyCgroup = resolve(cfg.proxyCgroup ?? ownCgroup());
    if (!isUnder(proxyCgroup, attachCgroup)) {
      throw new KmError(
        'KM_ERR_CGROUP_OUTSIDE_ROOT',
        `the proxy's cgroup ${proxyCgroup} is not under ${attachCgroup}: cgroup/getsockopt and splicing only see sockets of processes below the attach cgroup; run the proxy there or attach higher`,
      );
    }
    const proxyCgroupId = cgroupId(proxyCgroup);

    const lockPath = cfg.lockPath ?? defaultLockPath(pinDir);
    const lockFd = takeLock(lockPath, pinDir);
    // A fresh start (nothing pinned yet) is undone whole if it fails half-way;
    // a restart leaves the previous agent's pins as they were.
    const fresh = !existsSync(join(pinDir, 'km_settings_v1'));
    let native: NativeDatapath | undefined;
    let previous: Buffer | null = null;
    try {
      mkdirSync(join(pinDir, 'links'), { recursive: true });
      // Pins of an older layout nothing reads any more; left, they would keep a drain from removing pinDir.
      for (const name of RETIRED_PINS) rmSync(join(pinDir, name), { force: true });
      try {
        native = await addon().load({
          pinDir,
          ...(cfg.maxWorkloads ? { maxWorkloads: cfg.maxWorkloads } : {}),
          ...(cfg.maxExclusions ? { maxExclusions: cfg.maxExclusions } : {}),
          ...(cfg.maxConnections ? { maxConnections: cfg.maxConnections } : {}),
          splice: cfg.splice,
        });
      } catch (err) {
        throw new KmError('KM_ERR_LOAD', `loading the BPF programs failed: ${(err as Error).message}`, { cause: err });
      }

      previous = native.mapLookup('km_settings_v1', SETTINGS_KEY);
      const kept = previous ? decodeSettings(previous) : undefined;
      const settings: Settings = {
        // The applied state's part survives a restart; the proxy is not alive
        // until it says so with heartbeat() (a fresh start fails open meanwhile).
        failMode: kept?.failMode ?? 'open',
        cgroupCaptures: kept?.cgroupCaptures ?? 0,
        heartbeatNs: kept?.heartbeatNs ?? 0n,
        heartbeatTimeoutNs: BigInt(cfg.heartbeatTimeoutMs) * 1_000_000n,
        proxyCgroupId,
        proxyMark: cfg.proxyMark,
        outboundPort: cfg.outboundPort,
        inboundPort: cfg.inboundPort,
      };
      // Settings first: the programs must never run on a half-configured map.
      native.mapUpdate('km_settings_v1', SETTINGS_KEY, encodeSettings(settings));

      const reused: ProgramName[] = [];
      try {
        for (const prog of CGROUP_PROGRAMS) {
          if (native.attachCgroup(prog, attachCgroup, join(pinDir, 'links', prog)).reused) reused.push(prog);
        }
        native.attachSkMsg();
      } catch (err) {
        throw new KmError('KM_ERR_ATTACH', `attaching to ${attachCgroup} failed: ${(err as Error).message}`, { cause: err });
      }
      const dp = new EbpfDatapath(native, pinDir, attachCgroup, settings, lockFd, lockPath, reused);
      await dp.forgetInbound();
      return dp;
    } catch (err) {
      undoOpen(native, pinDir, fresh, previous);
      releaseLock(lockFd, lockPath);
      throw err;
    }
  }

  private get nat(): NativeDatapath {
    if (!this.native) throw new Error('the eBPF datapath is closed');
    return this.native;
  }

  private writeSettings(): void {
    this.nat.mapUpdate('km_settings_v1', SETTINGS_KEY, encodeSettings(this.settings));
  }

  /** Marks the proxy alive now (or at a given CLOCK_MONOTONIC instant). */
  heartbeat(atNs: bigint = process.hrtime.bigint()): void {
    this.settings.heartbeatNs = atNs;
    this.writeSettings();
  }

  /** Heartbeats now and every intervalMs until close(); the timer never holds the process open. */
  startHeartbeat(intervalMs = 1000): void {
    this.stopHeartbeat();
    this.heartbeat();
    this.timer = setInterval(() => this.heartbeat(), intervalMs);
    this.timer.unref();
  }

  stopHeartbeat(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  currentSettings(): Settings {
    return { ...this.settings };
  }

  counters(): Counters {
    return decodeStats(this.nat.readStats());
  }

  mapInfo(map: MapName) {
    return this.nat.mapInfo(map);
  }

  async dump(map: MapName): Promise<Array<[Buffer, Buffer]>> {
    return this.nat.mapDump(map);
  }

  programIds() {
    return this.nat.programIds();
  }

  apply(input: DesiredStateInput, options: ApplyOptions = {}): Promise<ApplyResult> {
    const run = this.queue.then(() => this.applyNow(input, options));
    this.queue = run.catch(() => {});
    return run;
  }

  private async applyNow(input: DesiredStateInput, options: ApplyOptions): Promise<ApplyResult> {
    const desired = parseDesired(input);
    const workloads = desired.workloads.map((w) => this.resolve(w));
    const owners = new Map<string, string>();
    for (const w of workloads) {
      const hex = encodeCaptureKey(w.key).toString('hex');
      const other = owners.get(hex);
      if (other) throw new KmError('KM_ERR_INVALID_SPEC', `workloads ${other} and ${w.name} are the same ${w.key.kind} (${w.key.id}): enrol it once`);
      owners.set(hex, w.name);
    }
    const current = await this.readPlanned();
    const plan = planMaps(
      current,
      workloads,
      { excludedPorts: desired.excludedPorts, excludedCidrs: desired.excludedCidrs.map(parseCidr), localAddresses: desired.localAddresses, nodeAddresses: desired.nodeAddresses },
      { prune: options.prune ?? true },
    );
    for (const map of PLANNED_MAPS) {
      const max = this.nat.mapInfo(map).maxEntries;
      if (plan.peak[map] > max) {
        throw new KmError('KM_ERR_MAP_FULL', `${map} would hold ${plan.peak[map]} entries but its capacity is ${max}: raise the datapath capacities (maxWorkloads/maxExclusions); nothing was changed`);
      }
    }
    const lines = formatPlan(plan);
    const cgroupCaptures = workloads.filter((w) => w.key.kind === 'cgroup').length;
    const settingsChange = this.settings.failMode !== desired.failMode || this.settings.cgroupCaptures !== cgroupCaptures;
    if (settingsChange) lines.push(`~ km_settings_v1: fail-${desired.failMode}, ${cgroupCaptures} cgroup captures`);
    if (options.dryRun) return { plan: lines, applied: false };

    const nat = this.nat;
    applyOps({ update: (m, k, v) => nat.mapUpdate(m, k, v), delete: (m, k) => void nat.mapDelete(m, k) }, plan.ops, current);
    if (settingsChange) {
      this.settings.failMode = desired.failMode;
      this.settings.cgroupCaptures = cgroupCaptures;
      this.writeSettings();
    }
    return { plan: lines, applied: true };
  }

  private resolve(w: Workload): ResolvedWorkload {
    if (!existsSync(w.cgroupPath)) {
      throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `workload ${w.name}: cgroup ${w.cgroupPath} does not exist (has the pod gone?)`);
    }
    const cg = resolve(w.cgroupPath);
    if (!isUnder(cg, this.attachCgroup)) {
      throw new KmError('KM_ERR_CGROUP_OUTSIDE_ROOT', `workload ${w.name}: cgroup ${cg} is not under ${this.attachCgroup}, where the programs are attached`);
    }
    let id: bigint;
    if (w.captureBy === 'netns') {
      if (!existsSync(w.netnsPath!)) {
        throw new KmError('KM_ERR_NETNS_NOT_FOUND', `workload ${w.name}: network namespace ${w.netnsPath} does not exist (has the pod gone?)`);
      }
      try {
        id = addon().netnsCookie(w.netnsPath!);
      } catch (err) {
        throw new KmError('KM_ERR_NETNS_NOT_FOUND', `workload ${w.name}: ${(err as Error).message}`, { cause: err });
      }
    } else {
      id = cgroupId(cg);
    }
    return { name: w.name, key: { kind: w.captureBy, id }, excludedPorts: w.excludedPorts, excludedCidrs: w.excludedCidrs.map(parseCidr), addresses: w.addresses };
  }

  private async readPlanned(): Promise<MapContents> {
    const out = emptyContents();
    for (const map of PLANNED_MAPS) {
      for (const [k, v] of await this.nat.mapDump(map)) out[map].set(k.toString('hex'), v);
    }
    return out;
  }

  /** Inbound interception per workload: its listeners' slots (one per family), its map keys, its netns link. */
  private readonly inbound = new Map<string, { slots: number[]; keys: string[]; link: string }>();
  /** Which workload each km_inbound_v1 key belongs to: a pod address reused by a new pod moves to it. */
  private readonly keyOwner = new Map<string, string>();

  /**
   * Hands TCP connections arriving in the workload's network namespace at
   * one of its addresses and ports to its inbound listener of that family
   * (the proxy's, opened in that namespace), at socket lookup. Again for the
   * same name replaces what it set before. The kernel does not check that a
   * socket handed over is in the arriving packet's namespace, so keys and
   * slots are kept strictly in step: the link is attached first, state is
   * recorded as it is written, and a failure undoes this call's writes.
   */
  setInbound(name: string, spec: { netnsPath: string; addresses: string[]; ports: number[]; listeners: { v4?: number; v6?: number } }): void {
    const nat = this.nat;
    const link = join(this.pinDir, 'links', `inbound-${statSync(spec.netnsPath).ino}`);
    nat.attachNetns('km_sk_lookup', spec.netnsPath, link);
    const prev = this.inbound.get(name);
    if (prev && prev.link !== link) addon().detachLink(prev.link);
    const reusable = [...(prev?.slots ?? [])];
    const entry = { slots: [] as number[], keys: [] as string[], link };
    this.inbound.set(name, entry);
    try {
      for (const family of ['v4', 'v6'] as const) {
        const fd = spec.listeners[family];
        const addresses = spec.addresses.filter((a) => a.includes(':') === (family === 'v6'));
        if (fd === undefined || addresses.length === 0) continue;
        const slot = reusable.shift() ?? this.freeInboundSlot();
        entry.slots.push(slot);
        const value = Buffer.alloc(8);
        value.writeBigUInt64LE(BigInt(fd));
        nat.mapUpdate('km_insocks_v1', u32(slot), value);
        for (const a of addresses) {
          for (const p of spec.ports) {
            const key = encodeInboundKey(a, p);
            const hex = key.toString('hex');
            nat.mapUpdate('km_inbound_v1', key, u32(slot));
            const owner = this.keyOwner.get(hex);
            if (owner && owner !== name) this.inbound.get(owner)?.keys.splice(this.inbound.get(owner)!.keys.indexOf(hex) >>> 0, 1);
            this.keyOwner.set(hex, name);
            entry.keys.push(hex);
          }
        }
      }
    } catch (err) {
      this.releaseInbound(name);
      throw err;
    }
    const kept = new Set(entry.keys);
    for (const old of prev?.keys ?? []) if (!kept.has(old) && this.keyOwner.get(old) === name) this.deleteKey(old);
    for (const slot of reusable) this.deleteSlot(slot);
  }

  /** Stops inbound interception for the workload: arriving connections go to its applications again. */
  releaseInbound(name: string): void {
    const have = this.inbound.get(name);
    if (!have || !this.native) return;
    // Only keys still its own: one a new pod took over (the same address) stays with that pod.
    for (const k of have.keys) if (this.keyOwner.get(k) === name) this.deleteKey(k);
    for (const slot of have.slots) this.deleteSlot(slot);
    addon().detachLink(have.link);
    this.inbound.delete(name);
  }

  private deleteKey(hex: string): void {
    this.keyOwner.delete(hex);
    this.nat.mapDelete('km_inbound_v1', Buffer.from(hex, 'hex'));
  }

  private deleteSlot(slot: number): void {
    try {
      this.nat.mapDelete('km_insocks_v1', u32(slot));
    } catch {
      /* the listener closed first: its socket left the sockmap by itself */
    }
  }

  private freeInboundSlot(): number {
    const used = new Set([...this.inbound.values()].flatMap((v) => v.slots));
    const max = this.nat.mapInfo('km_insocks_v1').maxEntries;
    for (let i = 0; i < max; i++) if (!used.has(i)) return i;
    throw new KmError('KM_ERR_MAP_FULL', `km_insocks_v1 is full (${max} inbound listeners): raise the workload capacity`);
  }

  /**
   * What an earlier agent left for inbound: its listeners closed with it
   * (their sockmap slots emptied themselves), so its keys and per-netns
   * links are dropped; this agent sets its own as it enrols workloads.
   */
  private async forgetInbound(): Promise<void> {
    for (const [k] of await this.nat.mapDump('km_inbound_v1')) this.nat.mapDelete('km_inbound_v1', k);
    const links = join(this.pinDir, 'links');
    for (const name of existsSync(links) ? readdirSync(links) : []) if (name.startsWith('inbound-')) addon().detachLink(join(links, name));
  }

  async close(options: { detach?: boolean } = {}): Promise<void> {
    this.stopHeartbeat();
    await this.queue;
    if (!this.native) return;
    try {
      if (options.detach) {
        for (const name of [...this.inbound.keys()]) this.releaseInbound(name);
        for (const prog of CGROUP_PROGRAMS) addon().detachLink(join(this.pinDir, 'links', prog));
        this.native.detachSkMsg();
        this.native.unpinMaps();
        removeEmptyDir(join(this.pinDir, 'links'));
        removeEmptyDir(this.pinDir);
      }
    } finally {
      this.native.close();
      this.native = undefined;
      // Its file goes too: nothing of the agent's is left under /run (lock.ts says why that is safe).
      if (this.lockFd !== undefined) releaseLock(this.lockFd, this.lockPath);
      this.lockFd = undefined;
    }
  }
}

/** Puts things back after a failed open(). */
function undoOpen(native: NativeDatapath | undefined, pinDir: string, fresh: boolean, previousSettings: Buffer | null): void {
  try {
    if (fresh) {
      for (const prog of CGROUP_PROGRAMS) addon().detachLink(join(pinDir, 'links', prog));
      native?.unpinMaps();
      removeEmptyDir(join(pinDir, 'links'));
      removeEmptyDir(pinDir);
    } else if (native && previousSettings) {
      native.mapUpdate('km_settings_v1', SETTINGS_KEY, previousSettings);
    }
  } finally {
    native?.close();
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
