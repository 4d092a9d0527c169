// SPDX-License-Identifier: Apache-2.0
/** HTTP/1.1 keep-alive at fixed concurrency: how many requests per second the path carries. */
import { type Workload, wholeSeconds } from './types.ts';
import { wrk, wrkWarmup } from './wrk.ts';

export const rps: Workload = {
  name: 'rps',
  title: 'HTTP/1.1 keep-alive',
  service: 'http',
  headline: { metric: 'rps', label: 'req/s', higherIsBetter: true },
  warmup: wrkWarmup,
  run: async (ctx) => {
    const r = await wrk(ctx, wholeSeconds(ctx.seconds));
    return { metrics: { rps: r.rps, wrk_p50_ms: r.p50_ms, wrk_p99_ms: r.p99_ms, errors: r.errors }, requests: r.requests };
  },
};
