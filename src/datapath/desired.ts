// SPDX-License-Identifier: Apache-2.0
/**
 * The datapath's desired state: what the agent wants captured and how. The
 * schemas reject bad input before anything touches the kernel.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { KmError } from '../errors.ts';
import { MAX_NODE_ADDRESSES, ipv4Bytes, ipv6Bytes, parseCidr } from './codec.ts';
import { parseSpec } from './parse.ts';

const port = z.number().int().min(1).max(65535);
const cidr = z.string().refine(
  (s) => {
    try {
      parseCidr(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be a CIDR like 10.0.0.0/8 or fd00::/8' },
);

/**
 * An address of a pod on this node, as a splice target: unique on the node,
 * so never loopback, unspecified, link-local (unique per link only) or
 * multicast, and never a prefix.
 */
export function isPodAddress(s: string): boolean {
  if (!isIP(s)) return false;
  const b = s.includes(':') ? ipv6Bytes(s) : ipv4Bytes(s);
  if (b.length === 4) return b[0] !== 127 && b[0] !== 0 && !(b[0] === 169 && b[1] === 254) && b[0]! < 224;
  if (b.subarray(0, 12).equals(V4MAPPED_PREFIX)) return false; // the IPv4 address is what the wire carries
  const zero = b.every((x) => x === 0);
  const loopback = b.subarray(0, 15).every((x) => x === 0) && b[15] === 1;
  return !zero && !loopback && !(b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) && b[0] !== 0xff;
}
const V4MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
const podAddress = z.string().refine(isPodAddress, { message: 'must be a unicast pod address (not loopback, link-local, unspecified, multicast or v4-mapped)' });
/** A source address the node's own connections may carry: link-local too (a route may pick one), never loopback or v4-mapped. */
export function isNodeAddress(s: string): boolean {
  if (isPodAddress(s)) return true;
  if (!isIP(s)) return false;
  const b = s.includes(':') ? ipv6Bytes(s) : ipv4Bytes(s);
  return b.length === 4 ? b[0] === 169 && b[1] === 254 : b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
}
const nodeAddress = z.string().refine(isNodeAddress, { message: 'must be a unicast address of this node (not loopback, unspecified, multicast or v4-mapped)' });

export const WorkloadSpecSchema = z.object({
  /** Stable name, e.g. "namespace/pod". */
  name: z.string().min(1),
  /** The pod's network namespace (e.g. /proc/PID/ns/net or /run/netns/NAME). */
  netnsPath: z.string().startsWith('/').optional(),
  /** Its cgroup v2 directory; must be under the datapath's attach cgroup. */
  cgroupPath: z.string().startsWith('/'),
  /** netns: every process in the pod's netns; cgroup: every process in the cgroup tree (hosts). */
  captureBy: z.enum(['netns', 'cgroup']).default('netns'),
  excludedPorts: z.array(port).default([]),
  excludedCidrs: z.array(cidr).default([]),
  /** The pod's own addresses: the proxy's connections to them are spliced (eBPF mode). */
  addresses: z.array(podAddress).default([]),
});
export type WorkloadSpec = z.input<typeof WorkloadSpecSchema>;
export type Workload = z.output<typeof WorkloadSpecSchema>;

export const DesiredStateSchema = z.object({
  workloads: z.array(WorkloadSpecSchema).default([]),
  excludedPorts: z.array(port).default([]),
  excludedCidrs: z.array(cidr).default([]),
  failMode: z.enum(['open', 'closed']).default('open'),
  /**
   * Addresses of other pods on this node (not captured, but with their
   * cgroups under the attach cgroup): the proxy's connections to them are
   * spliced too.
   */
  localAddresses: z.array(podAddress).default([]),
  /**
   * This node's own addresses. A connection from one of them to a pod's
   * inbound-captured port (kubelet's probes, host-network processes) goes to
   * the application directly, as without a mesh, unless the proxy made it.
   */
  nodeAddresses: z.array(nodeAddress).max(MAX_NODE_ADDRESSES, { message: `at most ${MAX_NODE_ADDRESSES} node addresses (list the ones kubelet probes from)` }).default([]),
});
export type DesiredStateInput = z.input<typeof DesiredStateSchema>;
export type DesiredState = z.output<typeof DesiredStateSchema>;

export function parseDesired(input: DesiredStateInput): DesiredState {
  const data = parseSpec(DesiredStateSchema, input, 'datapath state');
  const names = new Set<string>();
  for (const w of data.workloads) {
    if (names.has(w.name)) throw new KmError('KM_ERR_INVALID_SPEC', `workload ${w.name} is listed twice`);
    names.add(w.name);
    if (w.captureBy === 'netns' && !w.netnsPath) {
      throw new KmError('KM_ERR_INVALID_SPEC', `workload ${w.name} is captured by netns but has no netnsPath`);
    }
  }
  return data;
}
