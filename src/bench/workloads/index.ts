// SPDX-License-Identifier: Apache-2.0
/** Every workload, in the order a round runs them. */
import { bulk } from './bulk.ts';
import { cps } from './connections.ts';
import { grpc } from './grpc.ts';
import { latency, latencyLoaded } from './latency.ts';
import { rps } from './rps.ts';
import type { Workload } from './types.ts';

export type { Workload, WorkloadContext, WorkloadName, WorkloadResult } from './types.ts';

export const WORKLOADS: readonly Workload[] = [rps, latency, latencyLoaded, cps, bulk, grpc];
export const WORKLOAD_NAMES = WORKLOADS.map((w) => w.name);

/** Whether these workloads include a latency one (the generator, --idle-poll). */
export const measuresLatency = (names: readonly string[]) => names.some((w) => w.startsWith('latency'));
