// SPDX-License-Identifier: Apache-2.0
/**
 * A new connection per request (Connection: close): connection setup is
 * where conntrack costs most. Every run has fresh namespaces (the testbed
 * is built per run), so no TIME_WAIT socket or conntrack entry of an earlier
 * run is in the way; the warm-up uses keep-alive so as not to leave any.
 */
import { type Workload, wholeSeconds } from './types.ts';
import { wrk, wrkWarmup } from './wrk.ts';

export const cps: Workload = {
  name: 'cps',
  title: 'new connection per request',
  service: 'http',
  headline: { metric: 'cps', label: 'conn/s', higherIsBetter: true },
  warmup: wrkWarmup,
  run: async (ctx) => {
    const r = await wrk(ctx, wholeSeconds(ctx.seconds), ['-H', 'Connection: close']);
    return { metrics: { cps: r.rps, wrk_p50_ms: r.p50_ms, wrk_p99_ms: r.p99_ms, errors: r.errors }, requests: r.requests };
  },
};
