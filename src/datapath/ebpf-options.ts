// SPDX-License-Identifier: Apache-2.0
/** The eBPF datapath's options, checked before anything is loaded or locked. */
import { z } from 'zod';
import { parseSpec } from './parse.ts';

const capacity = z.number().int().min(1).max(1 << 24);

export const EbpfOptionsSchema = z.object({
  /** bpffs directory owned by this agent; maps and links are pinned here. */
  pinDir: z.string().startsWith('/'),
  /** cgroup v2 directory whose descendants are intercepted. Never the root. */
  attachCgroup: z.string().startsWith('/'),
  /** Single-owner lock; default /run/kernmesh/<pinDir basename>.lock. */
  lockPath: z.string().startsWith('/').optional(),
  outboundPort: z.number().int().min(1).max(65535).default(15001),
  inboundPort: z.number().int().min(1).max(65535).default(15006),
  /**
   * The proxy's own cgroup: its connects are never redirected, and it must be
   * under attachCgroup (getsockopt and splicing only see sockets there).
   * Default: this process's cgroup.
   */
  proxyCgroup: z.string().startsWith('/').optional(),
  /** SO_MARK on the proxy's own sockets (0 = none). */
  proxyMark: z.number().int().min(0).max(0xffffffff).default(0),
  /** A heartbeat older than this means the proxy is dead (fail open or closed). */
  heartbeatTimeoutMs: z.number().int().min(1).max(3_600_000).default(5000),
  maxWorkloads: capacity.optional(),
  maxExclusions: capacity.optional(),
  maxConnections: capacity.optional(),
  /** Splice app<->proxy socket pairs with sockops+sk_msg (default true). */
  splice: z.boolean().default(true),
});

export type EbpfOptions = z.input<typeof EbpfOptionsSchema>;
export type EbpfConfig = z.output<typeof EbpfOptionsSchema>;

export function parseEbpfOptions(input: EbpfOptions): EbpfConfig {
  return parseSpec(EbpfOptionsSchema, input, 'eBPF datapath option');
}
