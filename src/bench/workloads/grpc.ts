// SPDX-License-Identifier: Apache-2.0
/**
 * gRPC unary calls over h2c (h2load from nghttp2-client): a POST with a
 * length-prefixed message and gRPC's headers on a few connections with
 * several streams each; the server pod answers each with a Trailers-Only OK.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADDR, PORTS } from '../testbed.ts';
import type { Workload, WorkloadContext } from './types.ts';

/** A gRPC message frame: not compressed, 5 bytes of protobuf (field 1, "bench"). */
const MESSAGE = Buffer.from([0, 0, 0, 0, 7, 0x0a, 5, ...Buffer.from('bench')]);
const CLIENTS = 2;

export function parseH2load(out: string): { rps: number; requests: number; errors: number; mean_ms: number } {
  const fin = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const time = /time for request:\s+[\d.]+(?:us|ms|s)\s+[\d.]+(?:us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  if (!fin || !req) throw new Error(`could not read h2load's output:\n${out}`);
  const mean = time ? Number(time[1]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[time[2]!]! : NaN;
  return { rps: Number(fin[1]), requests: Number(req[4]), errors: Number(req[5]) + Number(req[6]) + Number(req[7]), mean_ms: mean };
}

async function h2load(ctx: WorkloadContext, seconds: number) {
  const body = join(ctx.dir, 'grpc-request.bin');
  writeFileSync(body, MESSAGE);
  const streams = Math.max(1, Math.round(ctx.connections / CLIENTS));
  const args = ['-t1', `-c${CLIENTS}`, `-m${streams}`, '-D', `${Math.round(seconds * 1000)}ms`, '-d', body, '-H', 'content-type: application/grpc', '-H', 'te: trailers', `http://${ADDR.vip}:${PORTS.grpc}/kernmesh.bench.Bench/Unary`];
  const proc = await ctx.client('h2load', 'h2load', args, seconds * 1000 + 30_000);
  const r = parseH2load(proc.stdout);
  if (r.requests === 0 || r.errors > r.requests / 1000) throw new Error(`h2load: ${r.errors} failed of ${r.requests}:\n${proc.stdout}`);
  return r;
}

export const grpc: Workload = {
  name: 'grpc',
  title: 'gRPC unary over h2c',
  service: 'grpc',
  headline: { metric: 'grpc_rps', label: 'calls/s', higherIsBetter: true },
  warmup: async (ctx) => void (await h2load(ctx, ctx.warmupSeconds)),
  run: async (ctx) => {
    const r = await h2load(ctx, ctx.seconds);
    return { metrics: { grpc_rps: r.rps, mean_ms: r.mean_ms, errors: r.errors }, requests: r.requests };
  },
};
