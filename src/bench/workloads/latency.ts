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
  requests: number;
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
 * After wrk's warm-up, the generator runs at the measured rate for this many
 * times the warm-up time, its figures dropped. A proxy on a JIT (ours) is not
 * in its steady state after wrk alone: wrk's connections ending (resets)
 * and the generator's new ones at a low rate take V8 down paths it has not
 * optimised, and for about 4 s the recompiling threads take the two CPUs
 * from the proxy, the server and the generator. Measured straight after wrk,
 * our proxy's p99 at 2 000 req/s was 0.5-1.1 ms on loopback; after 4 s more
 * at the rate, 0.2-0.6 ms, about what a proxy that has run for minutes gives
 * (0.22-0.46). HAProxy, compiled ahead of time, has no such warm-up. Every
 * mode gets the same one.
 */
const GENERATOR_WARMUP_FACTOR = 2;

/** One generator run in the client pod, to completion. */
async function generate(ctx: WorkloadContext, rate: number, seconds: number): Promise<GeneratorOutput> {
  const args = ['--host', ADDR.vip, '--port', String(PORTS.http), '--rate', String(rate), '--seconds', String(seconds), '--connections', String(ctx.connections)];
  const proc = await ctx.client('constant-rate generator', LOADGEN_PATH, args, seconds * 1000 + 30_000);
  return JSON.parse(proc.stdout.trim().split('\n').pop()!) as GeneratorOutput;
}

/** The same measurement at a given rate. */
function atRate(name: 'latency' | 'latency-loaded', title: string, rateOf: (ctx: WorkloadContext) => number): Workload {
  return {
    name,
    title,
    service: 'http',
    headline: { metric: 'p99_ms', label: 'ms', higherIsBetter: false },
    warmup: async (ctx) => {
      await wrkWarmup(ctx);
      await generate(ctx, rateOf(ctx), GENERATOR_WARMUP_FACTOR * wholeSeconds(ctx.warmupSeconds));
    },
    run: async (ctx) => {
      const out = await generate(ctx, rateOf(ctx), ctx.seconds);
      const { metrics, curve } = latencyFigures(out, ctx.seconds);
      return { metrics, requests: out.requests, curve };
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
