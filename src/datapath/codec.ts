// SPDX-License-Identifier: Apache-2.0
/**
 * Byte layouts of the map keys and values. Must stay in sync with
 * bpf/kernmesh.h and native/src/layout_check.cc (sizes asserted there and in
 * test/unit/codec.test.ts). Integers are little-endian (host order on every
 * architecture we build for) unless the header says network order.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { KmError } from '../errors.ts';

/** KM_MAX_NODE_ADDRESSES: km_nodeaddr_v1's fixed capacity (native/src/layout_check.cc keeps the two equal). */
export const MAX_NODE_ADDRESSES = 1024;

export const SIZES = {
  settings: 40,
  captureKey: 16,
  workload: 8,
  portKey: 8,
  cidr4Key: 12,
  cidr6Key: 24,
  origdst: 24,
  sockKey: 48,
  inboundKey: 20,
  addrKey: 20,
} as const;

/** Counter names in enum km_stat order. */
export const STAT_NAMES = [
  'connect4_redirected',
  'connect6_redirected',
  'skip_not_captured',
  'skip_not_tcp',
  'skip_proxy',
  'skip_loopback',
  'skip_excluded_port',
  'skip_excluded_cidr',
  'fail_open',
  'fail_closed',
  'origdst_save_failed',
  'sockops_active',
  'sockops_passive',
  'sockhash_failed',
  'msg_redirected',
  'bytes_redirected',
  'msg_miss',
  'getsockopt_answered',
  'getsockopt_miss',
  'getsockopt_large_passed',
  'sockops_local_active',
  'sockops_local_passive',
  'local_left',
  'inbound_assigned',
  'inbound_node_passed',
  'inbound_dial_saved',
] as const;
export type StatName = (typeof STAT_NAMES)[number];
export type Counters = Record<StatName, bigint>;

export const CAPTURE_NETNS = 1;
export const CAPTURE_CGROUP = 2;
export const FAIL_OPEN = 0;
export const FAIL_CLOSED = 1;

export interface Settings {
  heartbeatNs: bigint;
  heartbeatTimeoutNs: bigint;
  proxyCgroupId: bigint;
  proxyMark: number;
  failMode: 'open' | 'closed';
  outboundPort: number;
  inboundPort: number;
  cgroupCaptures: number;
}

export function encodeSettings(s: Settings): Buffer {
  const b = Buffer.alloc(SIZES.settings);
  b.writeBigUInt64LE(s.heartbeatNs, 0);
  b.writeBigUInt64LE(s.heartbeatTimeoutNs, 8);
  b.writeBigUInt64LE(s.proxyCgroupId, 16);
  b.writeUInt32LE(s.proxyMark, 24);
  b.writeUInt32LE(s.failMode === 'closed' ? FAIL_CLOSED : FAIL_OPEN, 28);
  b.writeUInt16LE(s.outboundPort, 32);
  b.writeUInt16LE(s.inboundPort, 34);
  b.writeUInt32LE(s.cgroupCaptures, 36);
  return b;
}

export function decodeSettings(b: Buffer): Settings {
  return {
    heartbeatNs: b.readBigUInt64LE(0),
    heartbeatTimeoutNs: b.readBigUInt64LE(8),
    proxyCgroupId: b.readBigUInt64LE(16),
    proxyMark: b.readUInt32LE(24),
    failMode: b.readUInt32LE(28) === FAIL_CLOSED ? 'closed' : 'open',
    outboundPort: b.readUInt16LE(32),
    inboundPort: b.readUInt16LE(34),
    cgroupCaptures: b.readUInt32LE(36),
  };
}

export interface CaptureKey {
  kind: 'netns' | 'cgroup';
  id: bigint;
}

export function encodeCaptureKey(k: CaptureKey): Buffer {
  const b = Buffer.alloc(SIZES.captureKey);
  b.writeBigUInt64LE(k.id, 0);
  b.writeUInt32LE(k.kind === 'netns' ? CAPTURE_NETNS : CAPTURE_CGROUP, 8);
  return b;
}

export function decodeCaptureKey(b: Buffer): CaptureKey {
  return { id: b.readBigUInt64LE(0), kind: b.readUInt32LE(8) === CAPTURE_NETNS ? 'netns' : 'cgroup' };
}

export function encodeWorkload(id: number): Buffer {
  const b = Buffer.alloc(SIZES.workload);
  b.writeUInt32LE(id, 0);
  return b;
}

export function decodeWorkload(b: Buffer): number {
  return b.readUInt32LE(0);
}

export function encodePortKey(workloadId: number, port: number): Buffer {
  const b = Buffer.alloc(SIZES.portKey);
  b.writeUInt32LE(workloadId, 0);
  b.writeUInt16LE(port, 4);
  return b;
}

export function decodePortKey(b: Buffer): { workloadId: number; port: number } {
  return { workloadId: b.readUInt32LE(0), port: b.readUInt16LE(4) };
}

/** km_inbound_key: a pod's own address (network order) and a port it serves (host order). */
export function encodeInboundKey(address: string, port: number): Buffer {
  const c = parseCidr(address);
  const b = Buffer.alloc(SIZES.inboundKey);
  c.address.copy(b, 0);
  b.writeUInt16LE(port, 16);
  b.writeUInt16LE(c.family === 4 ? 2 : 10, 18);
  return b;
}

/** km_addr_key: an address of a pod on this node (network order), for km_local_v1. */
export function encodeAddrKey(address: string): Buffer {
  const c = parseCidr(address);
  const b = Buffer.alloc(SIZES.addrKey);
  c.address.copy(b, 0);
  b.writeUInt32LE(c.family === 4 ? 2 : 10, 16);
  return b;
}

export function decodeAddrKey(b: Buffer): string {
  const family = b.readUInt32LE(16) === 10 ? 6 : 4;
  return formatIp(Buffer.from(b.subarray(0, family === 4 ? 4 : 16)));
}

export interface Cidr {
  family: 4 | 6;
  /** The network address, host bits cleared. */
  address: Buffer;
  prefix: number;
}

/** Parse "10.0.0.0/8", "fd00::/8" or a bare address (a /32 or /128). */
export function parseCidr(text: string): Cidr {
  const [addr = '', len] = text.trim().split('/');
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : 0;
  if (family === 0) throw new KmError('KM_ERR_INVALID_SPEC', `"${text}" is not a CIDR (like 10.0.0.0/8 or fd00::/8)`);
  const bits = family === 4 ? 32 : 128;
  const prefix = len === undefined ? bits : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits || (len !== undefined && !/^\d+$/.test(len))) {
    throw new KmError('KM_ERR_INVALID_SPEC', `"${text}": the prefix length must be 0 to ${bits}`);
  }
  const address = family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  for (let i = 0; i < address.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    address[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { family, address, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.address)}/${c.prefix}`;
}

export function encodeCidrKey(workloadId: number, c: Cidr): Buffer {
  const b = Buffer.alloc(c.family === 4 ? SIZES.cidr4Key : SIZES.cidr6Key);
  b.writeUInt32LE(32 + c.prefix, 0);
  b.writeUInt32BE(workloadId, 4);
  c.address.copy(b, 8);
  return b;
}

export function decodeCidrKey(b: Buffer): { workloadId: number; cidr: Cidr } {
  const family = b.length === SIZES.cidr4Key ? 4 : 6;
  return {
    workloadId: b.readUInt32BE(4),
    cidr: { family, address: Buffer.from(b.subarray(8)), prefix: b.readUInt32LE(0) - 32 },
  };
}

export function ipv4Bytes(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

export function ipv6Bytes(addr: string): Buffer {
  // Expand "::" and an embedded IPv4 tail into eight 16-bit groups.
  let text = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const [a, b, c, d] = ipv4Bytes(v4[1]);
    text = text.slice(0, -v4[1].length) + `${((a! << 8) | b!).toString(16)}:${((c! << 8) | d!).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export interface OrigDst {
  family: 4 | 6;
  address: string;
  port: number;
  workloadId: number;
}

export function decodeOrigDst(b: Buffer): OrigDst {
  const family = b.readUInt16LE(18) === 10 ? 6 : 4;
  return {
    family,
    address: formatIp(Buffer.from(b.subarray(0, family === 4 ? 4 : 16))),
    port: b.readUInt16BE(16),
    workloadId: b.readUInt32LE(20),
  };
}

export function decodeStats(values: bigint[]): Counters {
  const out = {} as Counters;
  STAT_NAMES.forEach((name, i) => {
    out[name] = values[i] ?? 0n;
  });
  return out;
}
