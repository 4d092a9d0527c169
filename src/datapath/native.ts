// SPDX-License-Identifier: Apache-2.0
/**
 * Every declaration of the native addon (native/src), and the one place that
 * loads it. Nothing outside src/datapath/ imports this file.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { KmError } from '../errors.ts';

/** Capacities and pin location fixed at load. */
export interface NativeLoadOptions {
  /** Directory on a bpf filesystem; maps are pinned (and reused) here. */
  pinDir: string;
  maxWorkloads?: number;
  maxExclusions?: number;
  maxConnections?: number;
  /** sockops+sk_msg splicing of app<->proxy pairs (default true); off = connect-time redirect only. */
  splice?: boolean;
}

export interface NativeMapInfo {
  name: string;
  type: number;
  keySize: number;
  /** As userspace sees it: per-CPU maps hold one slot per possible CPU. */
  valueSize: number;
  maxEntries: number;
  pinPath: string | null;
  id: number;
}

export interface SocketAddress {
  family: 'IPv4' | 'IPv6';
  address: string;
  port: number;
}

/** The loaded BPF object. Errors carry `code` ('EPERM'), `errno`, `syscall`. */
export declare class NativeDatapath {
  private constructor();
  /** Attach (or, if a link is pinned at pinPath already, switch it to this program). */
  attachCgroup(program: ProgramName, cgroupPath: string, pinPath: string): { reused: boolean };
  /** An sk_lookup program on a network namespace, through a pinned link (switched in place when pinned for it). */
  attachNetns(program: ProgramName, netnsPath: string, pinPath: string): { reused: boolean };
  attachSkMsg(): void;
  detachSkMsg(): void;
  mapInfo(map: MapName): NativeMapInfo;
  mapUpdate(map: MapName, key: Buffer, value: Buffer, flags?: number): void;
  mapLookup(map: MapName, key: Buffer): Buffer | null;
  mapDelete(map: MapName, key: Buffer): boolean;
  mapDump(map: MapName): Promise<Array<[Buffer, Buffer]>>;
  /** Counters summed over CPUs, indexed like STAT_NAMES. */
  readStats(): bigint[];
  programIds(): Record<ProgramName, number>;
  unpinMaps(): void;
  /** Close every fd; pinned maps and links stay. */
  close(): void;
}

export type ProgramName = 'km_connect4' | 'km_connect6' | 'km_sockops' | 'km_sk_msg' | 'km_getsockopt' | 'km_sk_lookup';
export type MapName =
  | 'km_settings_v1'
  | 'km_capture_v1'
  | 'km_xport_v1'
  | 'km_xcidr4_v1'
  | 'km_xcidr6_v1'
  | 'km_odst_ck_v1'
  | 'km_odst_tp_v1'
  | 'km_socks_v1'
  | 'km_stats_v3'
  | 'km_inbound_v1'
  | 'km_insocks_v1'
  | 'km_local_v1'
  | 'km_expect_v1'
  | 'km_nodeaddr_v1'
  | 'km_dials_v1';

export interface NativeAddon {
  load(options: NativeLoadOptions): Promise<NativeDatapath>;
  /** Detach the link pinned at pinPath and remove the pin; false if none. */
  detachLink(pinPath: string): boolean;
  /** Whether a BPF program with this id is still loaded. */
  programExists(id: number): boolean;
  /** A listening, non-blocking TCP socket created inside another netns. */
  listenInNetns(netnsPath: string, host: string, port: number, backlog?: number): number;
  netnsCookie(netnsPath: string): bigint;
  /** An unconnected TCP socket created inside another netns (to reach a pod's own loopback). */
  socketInNetns(netnsPath: string, family: 4 | 6): number;
  /** SO_ORIGINAL_DST of an accepted socket (eBPF or iptables mode alike). */
  originalDst(fd: number): SocketAddress;
  /** An unconnected TCP socket carrying SO_MARK, for net.Socket({ fd }). */
  markedSocket(family: 4 | 6, mark: number): number;
  /** An exclusive, non-blocking flock; close the fd to release it. */
  lockFile(path: string): number;
}

/** The addon as built by `npm run build:native`. */
export const ADDON_PATH = fileURLToPath(new URL('../../build/native/Release/kernmesh.node', import.meta.url));

let cached: NativeAddon | undefined;

export function addon(): NativeAddon {
  if (cached) return cached;
  if (!existsSync(ADDON_PATH)) {
    throw new KmError('KM_ERR_NATIVE_MISSING', `native addon not found at ${ADDON_PATH}: run \`npm run build\``);
  }
  cached = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  return cached;
}
