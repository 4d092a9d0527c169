// SPDX-License-Identifier: Apache-2.0
/**
 * Latency at a fixed request rate below saturation, corrected for
 * coordinated omission (the project's constant-rate generator: latency is
 * measured from each request's intended send time).
 */
import { packageScript } from '../../paths.ts';
import { ADDR, PORTS } from '../testbed.ts';
import type { Workload } from './types.ts';
import { wrkWarmup } from './wrk.ts';

interface GeneratorOutput {
  problem?: string;
  requests: number;
  errors: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  mean_ms: number;
  curve: Array<[number, number]>;
  send_late_p50_ms: number;
  send_late_p99_ms: number;
}

export const latency: Workload = {
  name: 'latency',
  title: 'latency at a fixed rate',
  service: 'http',
  headline: { metric: 'p99_ms', label: 'ms', higherIsBetter: false },
  warmup: wrkWarmup,
  run: async (ctx) => {
    const args = [packageScript('bench/loadgen/constant-rate'), '--host', ADDR.vip, '--port', String(PORTS.http), '--rate', String(ctx.rate), '--seconds', String(ctx.seconds), '--connections', String(ctx.connections)];
    const proc = await ctx.client('constant-rate generator', process.execPath, args, ctx.seconds * 1000 + 30_000);
    const out = JSON.parse(proc.stdout.trim().split('\n').pop()!) as GeneratorOutput;
    if (out.problem) throw new Error(`the constant-rate generator: ${out.problem}`);
    const { curve, problem: _, ...figures } = out;
    return { metrics: { ...figures, achieved_rps: out.requests / ctx.seconds }, requests: out.requests, curve };
  },
};
