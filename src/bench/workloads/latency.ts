// SPDX-License-Identifier: Apache-2.0
/**
 * Latency at a fixed request rate below saturation, corrected for
 * coordinated omission: the project's constant-rate generator
 * (native/loadgen/constant-rate.c) measures each request's latency from its
 * intended send time and hands back every sample; the percentiles are
 * computed here, with the bench's other statistics.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { holdCpuLatency } from '../cpu-latency.ts';
import { CURVE_POINTS, percentile } from '../stats.ts';
import { ADDR, PORTS } from '../testbed.ts';
import { type Workload, type WorkloadContext, wholeSeconds } from './types.ts';
import { wrkWarmup } from './wrk.ts';

/** Built with the addon by `npm run build:native`. */
export const LOADGEN_PATH = fileURLToPath(new URL('../../../build/native/Release/kernmesh-loadgen', import.meta.url));

export function checkLoadgen(): void {
  if (!existsSync(LOADGEN_PATH)) throw new Error(`the constant-rate load generator is not built (${LOADGEN_PATH}): run npm run build:native (or scripts/bootstrap.sh)`);
}

interface GeneratorOutput {
  /** Answered in the measured window. */
  requests: number;
  /** Answered during the warm-up (--warmup), not recorded. */
  warmup_requests: number;
  /** Failed or unanswered, warm-up included: a failure there is as much a failure. */
  errors: number;
  /** Each answered request's latency from its intended send time. */
  latency_us: number[];
  /** How late the generator sent each request: its own floor, part of every latency. */
  late_us: number[];
}

/** Sorted milliseconds from the generator's microseconds. */
const sortedMs = (us: number[]) => Float64Array.from(us, (x) => x / 1000).sort();
const ms3 = (x: number) => Math.round(x * 1000) / 1000;

/** The figures of one run, from the generator's samples. */
export function latencyFigures(out: GeneratorOutput, seconds: number) {
  const lat = sortedMs(out.latency_us);
  const late = sortedMs(out.late_us);
  const at = (p: number) => ms3(percentile(lat, p));
  return {
    metrics: {
      requests: out.requests,
      errors: out.errors,
      p50_ms: at(50),
      p90_ms: at(90),
      p99_ms: at(99),
      p999_ms: at(99.9),
      max_ms: at(100),
      mean_ms: ms3(lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length)),
      send_late_p50_ms: ms3(percentile(late, 50)),
      send_late_p99_ms: ms3(percentile(late, 99)),
      achieved_rps: out.requests / seconds,
    },
    curve: CURVE_POINTS.map((p): [number, number] => [p, at(p)]),
  };
}

/**
 * After wrk's warm-up, the measured generator run first sends at its rate
 * for this many times the warm-up time on the same connections, recording
 * nothing (its --warmup). Two reasons, both measured on loopback:
 * - A proxy on a JIT (ours) is not in its steady state after wrk alone:
 *   wrk's connections ending (resets) and the generator's new ones take V8
 *   down paths it has not optimised, and for about 4 s the recompiling
 *   threads take the two CPUs from the proxy, the server and the generator.
 *   Straight after wrk our proxy's p99 at 2 000 req/s was 0.5-1.1 ms; after
 *   4 s more at the rate, 0.2-0.6 ms, about what a proxy that has run for
 *   minutes gives (0.22-0.46).
 * - The first few hundred milliseconds on new connections are their setup,
 *   in every engine. Warming up in a separate generator run left the measured
 *   window opening on 16 new connections: at 10 000 req/s, p99 over 5 rounds
 *   was 0.84-1.58 ms behind our proxy and 0.62-1.06 behind HAProxy; on the
 *   warmed-up connections 0.42-1.04 and 0.35-0.77. New connections have their
 *   own workload (cps).
 * HAProxy, compiled ahead of time, needs only the second. Every mode gets the same.
 */
const GENERATOR_WARMUP_FACTOR = 2;

/** One generator run in the client pod, to completion: warmupSeconds at the rate unrecorded, then the measured seconds. */
async function generate(ctx: WorkloadContext, rate: number, seconds: number, warmupSeconds: number): Promise<GeneratorOutput> {
  const args = ['--host', ADDR.vip, '--port', String(PORTS.http), '--rate', String(rate), '--seconds', String(seconds), '--warmup', String(warmupSeconds), '--connections', String(ctx.connections)];
  const proc = await ctx.client('constant-rate generator', LOADGEN_PATH, args, (warmupSeconds + seconds) * 1000 + 30_000);
  return JSON.parse(proc.stdout.trim().split('\n').pop()!) as GeneratorOutput;
}

/** The same measurement at a given rate. */
function atRate(name: 'latency' | 'latency-loaded', title: string, rateOf: (ctx: WorkloadContext) => number): Workload {
  return {
    name,
    title,
    service: 'http',
    headline: { metric: 'p99_ms', label: 'ms', higherIsBetter: false },
    warmup: wrkWarmup,
    run: async (ctx) => {
      const hold = ctx.idlePoll ? holdCpuLatency() : null;
      let out;
      try {
        out = await generate(ctx, rateOf(ctx), ctx.seconds, GENERATOR_WARMUP_FACTOR * wholeSeconds(ctx.warmupSeconds));
      } finally {
        hold?.release();
      }
      const { metrics, curve } = latencyFigures(out, ctx.seconds);
      // The CPU window around run() holds the warm-up's requests too: CPU per request counts them all.
      return { metrics, requests: out.requests + out.warmup_requests, curve };
    },
  };
}

/**
 * A light load (2 000 req/s by default): what one request costs on an idle
 * node. Its tail is mostly the machine: host preemption and wake-ups.
 */
export const latency = atRate('latency', 'latency at a fixed rate', (ctx) => ctx.rate);

/**
 * A load that keeps the baseline's proxy about half busy (10 000 req/s by
 * default on the reference machine), still below every mode's saturation:
 * where what interception costs per request shows in the tail, as queueing.
 */
export const latencyLoaded = atRate('latency-loaded', 'latency at a loaded fixed rate', (ctx) => ctx.loadedRate);
