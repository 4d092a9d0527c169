// SPDX-License-Identifier: Apache-2.0
/**
 * eBPF interception: loads the programs, attaches them under one cgroup with
 * pinned links, and reconciles the desired state into the maps.
 *
 * Restart-safe: maps and links are pinned under pinDir; a new agent reuses
 * them (switching the links to its freshly loaded programs in place), so
 * established spliced connections keep flowing and nothing is attached twice.
 */
import { closeSync, existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KmError, errnoCode } from '../errors.ts';
import {
  type Counters,
  type Settings,
  decodeSettings,
  decodeStats,
  encodeSettings,
  parseCidr,
} from './codec.ts';
import { type DesiredStateInput, parseDesired } from './desired.ts';
import { cgroup2Root, cgroupId, ensureBpffs, mounts, ownCgroup } from './host.ts';
import type { ApplyOptions, ApplyResult, Interceptor } from './interceptor.ts';
import { type MapName, type NativeDatapath, type ProgramName, addon } from './native.ts';
import { type MapContents, type PlannedMap, type ResolvedWorkload, emptyContents, formatPlan, planMaps } from './planner.ts';

export interface EbpfOptions {
  /** bpffs directory owned by this agent; maps and links are pinned here. */
  pinDir: string;
  /** cgroup v2 directory whose descendants are intercepted. Never the root. */
  attachCgroup: string;
  /** Single-owner lock; default /run/kernmesh/<pinDir basename>.lock. */
  lockPath?: string;
  outboundPort?: number;
  inboundPort?: number;
  /** The proxy's own cgroup (its connects are never redirected); default: this process's. */
  proxyCgroup?: string;
  /** SO_MARK on the proxy's own sockets (0 = none). */
  proxyMark?: number;
  heartbeatTimeoutMs?: number;
  maxWorkloads?: number;
  maxExclusions?: number;
  maxConnections?: number;
  /** Splice app<->proxy socket pairs with sockops+sk_msg (default true). */
  splice?: boolean;
}

const CGROUP_PROGRAMS: ProgramName[] = ['km_connect4', 'km_connect6', 'km_sockops', 'km_getsockopt'];
const PLANNED_MAPS: PlannedMap[] = ['km_capture_v1', 'km_xport_v1', 'km_xcidr4_v1', 'km_xcidr6_v1'];

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

  private constructor(native: NativeDatapath, opts: Required<Pick<EbpfOptions, 'pinDir' | 'attachCgroup'>>, settings: Settings, lockFd: number, reused: ProgramName[]) {
    this.native = native;
    this.pinDir = opts.pinDir;
    this.attachCgroup = opts.attachCgroup;
    this.settings = settings;
    this.lockFd = lockFd;
    this.reusedLinks = reused;
  }

  static async open(options: EbpfOptions): Promise<EbpfDatapath> {
    const pinDir = resolve(options.pinDir);
    const attachCgroup = resolve(options.attachCgroup);
    checkAttachCgroup(attachCgroup);
    checkPinDir(pinDir);
    const proxyCgroupId = cgroupId(options.proxyCgroup ?? ownCgroup());
    // A fresh start (nothing pinned yet) is undone whole if it fails half-way.
    const fresh = !existsSync(join(pinDir, 'km_settings_v1'));
    mkdirSync(join(pinDir, 'links'), { recursive: true });

    const lockPath = options.lockPath ?? `/run/kernmesh/${pinDir.split('/').pop()}.lock`;
    mkdirSync(dirname(lockPath), { recursive: true });
    let lockFd: number;
    try {
      lockFd = addon().lockFile(lockPath);
    } catch (err) {
      throw new KmError('KM_ERR_AGENT_RUNNING', `another kernmesh agent owns ${pinDir} (lock ${lockPath} is held): stop it first`, { cause: err });
    }
    writeSync(lockFd, `${process.pid}\n`, 0);

    let native: NativeDatapath | undefined;
    try {
      native = await addon().load({
        pinDir,
        ...(options.maxWorkloads ? { maxWorkloads: options.maxWorkloads } : {}),
        ...(options.maxExclusions ? { maxExclusions: options.maxExclusions } : {}),
        ...(options.maxConnections ? { maxConnections: options.maxConnections } : {}),
        splice: options.splice ?? true,
      });
    } catch (err) {
      closeSync(lockFd);
      if (fresh) {
        removeEmptyDir(join(pinDir, 'links'));
        removeEmptyDir(pinDir);
      }
      throw new KmError('KM_ERR_LOAD', `loading the BPF programs failed: ${(err as Error).message}`, { cause: err });
    }

    const previous = native.mapLookup('km_settings_v1', Buffer.alloc(4));
    // Fail mode and cgroup captures belong to the applied state: a restart keeps them.
    const kept = previous ? decodeSettings(previous) : undefined;
    const settings: Settings = {
      failMode: kept?.failMode ?? 'open',
      cgroupCaptures: kept?.cgroupCaptures ?? 0,
      heartbeatNs: process.hrtime.bigint(),
      heartbeatTimeoutNs: BigInt(options.heartbeatTimeoutMs ?? 5000) * 1_000_000n,
      proxyCgroupId,
      proxyMark: options.proxyMark ?? 0,
      outboundPort: options.outboundPort ?? 15001,
      inboundPort: options.inboundPort ?? 15006,
    };
    // Settings first: the programs must never run on a half-configured map.
    native.mapUpdate('km_settings_v1', Buffer.alloc(4), encodeSettings(settings));

    const reused: ProgramName[] = [];
    try {
      for (const prog of CGROUP_PROGRAMS) {
        if (native.attachCgroup(prog, attachCgroup, join(pinDir, 'links', prog)).reused) reused.push(prog);
      }
      native.attachSkMsg();
    } catch (err) {
      // Leave no half-attached state behind; a previous agent's pins stay as they were.
      if (fresh) {
        for (const prog of CGROUP_PROGRAMS) addon().detachLink(join(pinDir, 'links', prog));
        native.unpinMaps();
        removeEmptyDir(join(pinDir, 'links'));
        removeEmptyDir(pinDir);
      }
      native.close();
      closeSync(lockFd);
      throw new KmError('KM_ERR_ATTACH', `attaching to ${attachCgroup} failed: ${(err as Error).message}`, { cause: err });
    }

    return new EbpfDatapath(native, { pinDir, attachCgroup }, settings, lockFd, reused);
  }

  private get nat(): NativeDatapath {
    if (!this.native) throw new Error('the eBPF datapath is closed');
    return this.native;
  }

  private writeSettings(): void {
    this.nat.mapUpdate('km_settings_v1', Buffer.alloc(4), encodeSettings(this.settings));
  }

  /** Marks the proxy alive now (or at a given CLOCK_MONOTONIC instant). */
  heartbeat(atNs: bigint = process.hrtime.bigint()): void {
    this.settings.heartbeatNs = atNs;
    this.writeSettings();
  }

  /** Heartbeats every intervalMs until close(); the timer never holds the process open. */
  startHeartbeat(intervalMs = 1000): void {
    this.stopHeartbeat();
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

  async apply(input: DesiredStateInput, options: ApplyOptions = {}): Promise<ApplyResult> {
    const desired = parseDesired(input);
    const workloads = desired.workloads.map((w) => this.resolve(w));
    const current = await this.readPlanned();
    const plan = planMaps(
      current,
      workloads,
      { excludedPorts: desired.excludedPorts, excludedCidrs: desired.excludedCidrs.map(parseCidr) },
      { prune: options.prune ?? true },
    );
    for (const map of PLANNED_MAPS) {
      const max = this.nat.mapInfo(map).maxEntries;
      if (plan.sizes[map] > max) {
        throw new KmError('KM_ERR_MAP_FULL', `${map} would hold ${plan.sizes[map]} entries but its capacity is ${max}: raise the datapath capacities (maxWorkloads/maxExclusions); nothing was changed`);
      }
    }
    const lines = formatPlan(plan);
    const cgroupCaptures = workloads.filter((w) => w.key.kind === 'cgroup').length;
    const settingsChange = this.settings.failMode !== desired.failMode || this.settings.cgroupCaptures !== cgroupCaptures;
    if (settingsChange) lines.push(`~ km_settings_v1: fail-${desired.failMode}, ${cgroupCaptures} cgroup captures`);
    if (options.dryRun) return { plan: lines, applied: false };

    this.applyOps(plan.ops);
    if (settingsChange) {
      this.settings.failMode = desired.failMode;
      this.settings.cgroupCaptures = cgroupCaptures;
      this.writeSettings();
    }
    return { plan: lines, applied: true };
  }

  /** Writes ops in order; on any failure restores what it already wrote, then throws. */
  private applyOps(ops: ReturnType<typeof planMaps>['ops']): void {
    const undo: Array<() => void> = [];
    try {
      for (const op of ops) {
        const prev = this.nat.mapLookup(op.map, op.key);
        if (op.action === 'upsert') this.nat.mapUpdate(op.map, op.key, op.value!);
        else this.nat.mapDelete(op.map, op.key);
        undo.push(() => (prev ? this.nat.mapUpdate(op.map, op.key, prev) : this.nat.mapDelete(op.map, op.key)));
      }
    } catch (err) {
      for (const u of undo.reverse()) {
        try {
          u();
        } catch {
          /* best effort: the original error is what the caller must see */
        }
      }
      const full = errnoCode(err) === 'E2BIG' || errnoCode(err) === 'ENOSPC';
      throw new KmError(full ? 'KM_ERR_MAP_FULL' : 'KM_ERR_INVALID_SPEC', `applying the datapath state failed and was rolled back: ${(err as Error).message}`, { cause: err });
    }
  }

  private resolve(w: ReturnType<typeof parseDesired>['workloads'][number]): ResolvedWorkload {
    if (!existsSync(w.cgroupPath)) {
      throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `workload ${w.name}: cgroup ${w.cgroupPath} does not exist (has the pod gone?)`);
    }
    const cg = resolve(w.cgroupPath);
    if (cg !== this.attachCgroup && !cg.startsWith(this.attachCgroup + '/')) {
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
    return {
      name: w.name,
      key: { kind: w.captureBy, id },
      excludedPorts: w.excludedPorts,
      excludedCidrs: w.excludedCidrs.map(parseCidr),
    };
  }

  private async readPlanned(): Promise<MapContents> {
    const out = emptyContents();
    for (const map of PLANNED_MAPS) {
      for (const [k, v] of await this.nat.mapDump(map)) out[map].set(k.toString('hex'), v);
    }
    return out;
  }

  async close(options: { detach?: boolean } = {}): Promise<void> {
    this.stopHeartbeat();
    if (!this.native) return;
    if (options.detach) {
      for (const prog of CGROUP_PROGRAMS) addon().detachLink(join(this.pinDir, 'links', prog));
      this.native.detachSkMsg();
      this.native.unpinMaps();
      removeEmptyDir(join(this.pinDir, 'links'));
      removeEmptyDir(this.pinDir);
    }
    this.native.close();
    this.native = undefined;
    if (this.lockFd !== undefined) closeSync(this.lockFd);
    this.lockFd = undefined;
  }
}

/**
 * Removes everything a (possibly dead) agent pinned under pinDir without
 * loading anything: the uninstall path.
 */
export function cleanupPins(pinDir: string): string[] {
  const removed: string[] = [];
  if (!existsSync(pinDir)) return removed;
  const links = join(pinDir, 'links');
  if (existsSync(links)) {
    for (const name of readdirSync(links)) {
      if (addon().detachLink(join(links, name))) removed.push(join(links, name));
    }
    removeEmptyDir(links);
  }
  for (const name of readdirSync(pinDir)) {
    // Map pins: unlinking the last reference frees the map (and its sk_msg program).
    rmSync(join(pinDir, name), { force: true });
    removed.push(join(pinDir, name));
  }
  removeEmptyDir(pinDir);
  return removed;
}

/**
 * Waits until none of the given programs is loaded any more (the kernel frees
 * them shortly after their last link, map or fd goes); returns those left.
 */
export async function programsStillLoaded(ids: number[], timeoutMs = 3000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = ids.filter((id) => addon().programExists(id));
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 25));
  }
}

function removeEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

function checkAttachCgroup(path: string): void {
  const root = cgroup2Root();
  if (path === root || !path.startsWith(root + '/')) {
    throw new KmError('KM_ERR_CGROUP_OUTSIDE_ROOT', `refusing to attach to ${path}: give a cgroup below the cgroup2 mount ${root}, never its root`);
  }
  if (!existsSync(path)) {
    throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `cgroup ${path} does not exist: create it or fix --attach-cgroup`);
  }
}

function checkPinDir(pinDir: string): void {
  ensureBpffs();
  const owner = mounts()
    .filter((m) => pinDir === m.target || pinDir.startsWith(m.target.endsWith('/') ? m.target : m.target + '/'))
    .sort((a, b) => b.target.length - a.target.length)[0];
  if (!owner || owner.fstype !== 'bpf') {
    throw new KmError('KM_ERR_BPFFS', `${pinDir} is not on a bpf filesystem: pins must live under a bpffs mount such as /sys/fs/bpf`);
  }
}
