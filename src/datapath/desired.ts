// SPDX-License-Identifier: Apache-2.0
/**
 * The datapath's desired state: what the agent wants captured and how. The
 * schemas reject bad input before anything touches the kernel.
 */
import { z } from 'zod';
import { KmError } from '../errors.ts';
import { parseCidr } from './codec.ts';
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
});
export type WorkloadSpec = z.input<typeof WorkloadSpecSchema>;
export type Workload = z.output<typeof WorkloadSpecSchema>;

export const DesiredStateSchema = z.object({
  workloads: z.array(WorkloadSpecSchema).default([]),
  excludedPorts: z.array(port).default([]),
  excludedCidrs: z.array(cidr).default([]),
  failMode: z.enum(['open', 'closed']).default('open'),
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
