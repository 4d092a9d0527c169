// SPDX-License-Identifier: Apache-2.0
/** What a workload is to the runner: a warm-up, a measured run, and its figures. */
import type { ServiceKind } from '../haproxy.ts';
import type { Mode } from '../modes.ts';
import type { Proc } from '../procs.ts';

export type WorkloadName = 'rps' | 'latency' | 'latency-loaded' | 'cps' | 'bulk' | 'grpc';

export interface WorkloadContext {
  seconds: number;
  warmupSeconds: number;
  /** Concurrency of the fixed-concurrency workloads (connections, or gRPC streams). */
  connections: number;
  /** Requests per second of the latency workload (a light load). */
  rate: number;
  /** Requests per second of the latency-loaded workload (the baseline's proxy about half busy). */
  loadedRate: number;
  /** Keep the CPUs out of idle states while a latency workload measures. */
  idlePoll: boolean;
  /** A scratch directory for the generators' input files. */
  dir: string;
  /** Runs a load generator in the client pod (its cgroup and namespace) to completion. */
  client(name: string, cmd: string, args: string[], timeoutMs: number): Promise<Proc>;
}

export interface WorkloadResult {
  /** Named figures, e.g. rps, p99_ms, gbps. */
  metrics: Record<string, number>;
  /** Requests completed while the CPU was measured, around run() (for CPU per 1 000 requests): a warm-up inside run() included. */
  requests?: number;
  /** Bytes moved in the measured window (for CPU per GB). */
  bytes?: number;
  /** The latency distribution: [percentile, ms]. */
  curve?: Array<[number, number]>;
}

export interface Workload {
  name: WorkloadName;
  title: string;
  /** The server pod's service it drives (decides the HAProxy engine's configuration). */
  service: ServiceKind;
  /** The figure the tables and charts lead with. */
  headline: { metric: string; label: string; higherIsBetter: boolean };
  /** A reason to skip a mode, or null. */
  skip?(mode: Mode): string | null;
  warmup(ctx: WorkloadContext): Promise<void>;
  run(ctx: WorkloadContext): Promise<WorkloadResult>;
}

/** Seconds for a generator that wants whole seconds. */
export const wholeSeconds = (s: number) => Math.max(1, Math.round(s));
