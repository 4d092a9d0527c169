// SPDX-License-Identifier: Apache-2.0
/** wrk (from Debian) in the client pod, and reading what it prints. */
import { ADDR } from '../testbed.ts';
import { type WorkloadContext, wholeSeconds } from './types.ts';

export interface WrkResult {
  rps: number;
  requests: number;
  /** wrk's own latency percentiles: measured from the actual send, so NOT corrected for coordinated omission. */
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  errors: number;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

export function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const pct = (p: number) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)$`, 'm').exec(out);
    return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
  };
  const rps = num(/^Requests\/sec:\s+([\d.]+)/m);
  const requests = num(/^\s+(\d+) requests in /m);
  if (!Number.isFinite(rps) || !Number.isFinite(requests)) throw new Error(`could not read wrk's output:\n${out}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = num(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return { rps, requests, p50_ms: pct(50), p90_ms: pct(90), p99_ms: pct(99), errors: errors + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) };
}

/** wrk -t1 against the HTTP service's VIP; extra: e.g. a Connection: close header. */
export async function wrk(ctx: WorkloadContext, seconds: number, extra: string[] = []): Promise<WrkResult> {
  const args = ['-t1', `-c${ctx.connections}`, `-d${seconds}s`, '--latency', ...extra, `http://${ADDR.vip}/`];
  const proc = await ctx.client('wrk', 'wrk', args, seconds * 1000 + 30_000);
  const r = parseWrk(proc.stdout);
  // A connection-per-request run may see a reset or two as it stops; more is a broken path.
  if (r.errors > Math.max(10, r.requests / 1000)) throw new Error(`wrk saw ${r.errors} errors in ${r.requests} requests:\n${proc.stdout}`);
  return r;
}

/** The warm-up every HTTP workload shares: keep-alive load for the warm-up time, its figures dropped. */
export async function wrkWarmup(ctx: WorkloadContext): Promise<void> {
  await wrk(ctx, wholeSeconds(ctx.warmupSeconds));
}
