// SPDX-License-Identifier: Apache-2.0
/** The bench's knobs, their defaults, and what --quick changes. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODES, MODE_NAMES } from './modes.ts';
import { WORKLOAD_NAMES, type WorkloadName } from './workloads/index.ts';

export interface BenchOptions {
  quick: boolean;
  rounds: number;
  /** Measured seconds per run. */
  seconds: number;
  /** Warm-up seconds per run (same workload, not measured). */
  warmupSeconds: number;
  modes: string[];
  workloads: WorkloadName[];
  /** Where the results go. */
  out: string;
  /** Concurrency of the fixed-concurrency workloads. */
  connections: number;
  /** Requests per second of the latency workload: a light load, far below every mode's saturation. */
  rate: number;
  /** Requests per second of the latency-loaded workload: still below every mode's saturation, but a load that keeps the baseline's proxy busy. */
  loadedRate: number;
  /** Keep the CPUs out of idle states while the latency workloads measure (cpu-latency.ts). */
  idlePoll: boolean;
}

export interface BenchOptionsInput {
  quick?: boolean;
  rounds?: number;
  seconds?: number;
  modes?: string[];
  workloads?: string[];
  out?: string;
  connections?: number;
  rate?: number;
  loadedRate?: number;
  /** --idle-poll */
  idlePoll?: boolean;
}

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Fills in defaults; throws a plain Error naming the bad value (the CLI reports it as a usage error). */
export function resolveOptions(input: BenchOptionsInput): BenchOptions {
  const quick = !!input.quick;
  const positive = (name: string, v: number | undefined, dflt: number) => {
    const x = v ?? dflt;
    if (!Number.isFinite(x) || x <= 0) throw new Error(`--${name} must be a positive number (got ${v})`);
    return x;
  };
  const modes = input.modes ?? [...DEFAULT_MODES];
  for (const m of modes) if (!MODE_NAMES.includes(m)) throw new Error(`unknown mode ${m} (known: ${MODE_NAMES.join(', ')})`);
  const workloads = input.workloads ?? [...WORKLOAD_NAMES];
  for (const w of workloads) if (!(WORKLOAD_NAMES as string[]).includes(w)) throw new Error(`unknown workload ${w} (known: ${WORKLOAD_NAMES.join(', ')})`);
  if (modes.length === 0 || workloads.length === 0) throw new Error('nothing to run: give at least one mode and one workload');
  const rounds = positive('rounds', input.rounds, quick ? 1 : 5);
  if (!Number.isInteger(rounds)) throw new Error(`--rounds must be a whole number (got ${rounds})`);
  const seconds = positive('seconds', input.seconds, quick ? 2 : 5);
  return {
    quick,
    rounds,
    seconds,
    warmupSeconds: quick ? 1 : 2,
    // Keep the order the user gave out of it: runs follow the canonical order.
    modes: MODE_NAMES.filter((m) => modes.includes(m)),
    workloads: WORKLOAD_NAMES.filter((w) => workloads.includes(w)),
    out: input.out ?? join(tmpdir(), `kernmesh-bench-${stamp()}`),
    connections: positive('connections', input.connections, 16),
    rate: positive('rate', input.rate, quick ? 1000 : 2000),
    loadedRate: positive('loaded-rate', input.loadedRate, quick ? 5000 : 10000),
    idlePoll: input.idlePoll ?? false,
  };
}
