// SPDX-License-Identifier: Apache-2.0
/**
 * Local rate limits: token buckets refilled lazily on use (no timers), one
 * per limit or one per source when perSource is set, and per-caller quotas
 * counted per fill interval.
 */
export interface CompiledRateLimit {
  route?: string;
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
  perSource: boolean;
  quotas?: Map<string, number>;
  buckets: Map<string, { tokens: number; last: number }>;
  quotaUse: Map<string, { window: number; used: number }>;
}

/** Sources tracked per limit before the oldest are forgotten: bounds memory under churn. */
const MAX_BUCKETS = 10_000;

/** True when the request may pass (and takes its token). */
export function take(rl: CompiledRateLimit, source: string, now: number): boolean {
  if (rl.quotas) {
    const quota = rl.quotas.get(source);
    if (quota !== undefined) {
      const window = Math.floor(now / rl.fillIntervalMs);
      let q = rl.quotaUse.get(source);
      if (!q || q.window !== window) {
        q = { window, used: 0 };
        rl.quotaUse.set(source, q);
      }
      if (q.used >= quota) return false;
      q.used++;
    }
  }
  const key = rl.perSource ? source : '';
  let b = rl.buckets.get(key);
  if (!b) {
    if (rl.buckets.size >= MAX_BUCKETS) rl.buckets.delete(rl.buckets.keys().next().value!);
    b = { tokens: rl.maxTokens, last: now };
    rl.buckets.set(key, b);
  } else {
    const fills = Math.floor((now - b.last) / rl.fillIntervalMs);
    if (fills > 0) {
      b.tokens = Math.min(rl.maxTokens, b.tokens + fills * rl.tokensPerFill);
      b.last += fills * rl.fillIntervalMs;
    }
  }
  if (b.tokens < 1) return false;
  b.tokens--;
  return true;
}
