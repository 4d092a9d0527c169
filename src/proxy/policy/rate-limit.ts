// SPDX-License-Identifier: Apache-2.0
/**
 * Local rate limits: token buckets refilled lazily on use (no timers), one
 * per limit or one per source when perSource is set, and per-caller quotas
 * counted per fill interval.
 */
export interface CompiledRateLimit {
  /** The RateLimit object's "namespace/name": its buckets and quota counts outlive routing-table swaps by this key. */
  key: string;
  /** Only requests this rule (rules[].name of a Route) matched. */
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

/**
 * True when every limit has room for this request; only then does it take a
 * token (and a quota count) from each. A request one limit refuses is not
 * served, so it uses up nothing of the others or of its caller's quota.
 */
export function admit(limits: CompiledRateLimit[], route: string | undefined, source: string, now: number): boolean {
  for (const rl of limits) if (applies(rl, route) && !hasRoom(rl, source, now)) return false;
  for (const rl of limits) {
    if (!applies(rl, route)) continue;
    bucketOf(rl, source, now).tokens--;
    const q = rl.quotas?.has(source) ? rl.quotaUse.get(source) : undefined;
    if (q) q.used++;
  }
  return true;
}

function applies(rl: CompiledRateLimit, route: string | undefined): boolean {
  return rl.route === undefined || rl.route === route;
}

function hasRoom(rl: CompiledRateLimit, source: string, now: number): boolean {
  const quota = rl.quotas?.get(source);
  if (quota !== undefined) {
    const window = Math.floor(now / rl.fillIntervalMs);
    let q = rl.quotaUse.get(source);
    if (!q || q.window !== window) {
      q = { window, used: 0 };
      rl.quotaUse.set(source, q);
    }
    if (q.used >= quota) return false;
  }
  return bucketOf(rl, source, now).tokens >= 1;
}

/** The bucket this request draws from, refilled for the time since its last fill. */
function bucketOf(rl: CompiledRateLimit, source: string, now: number): { tokens: number; last: number } {
  const key = rl.perSource ? source : '';
  let b = rl.buckets.get(key);
  if (!b) {
    if (rl.buckets.size >= MAX_BUCKETS) rl.buckets.delete(rl.buckets.keys().next().value!);
    b = { tokens: rl.maxTokens, last: now };
    rl.buckets.set(key, b);
    return b;
  }
  const fills = Math.floor((now - b.last) / rl.fillIntervalMs);
  if (fills > 0) {
    b.tokens = Math.min(rl.maxTokens, b.tokens + fills * rl.tokensPerFill);
    b.last += fills * rl.fillIntervalMs;
  }
  // A limit lowered by a config change applies at once to a bucket carried over from before it.
  if (b.tokens > rl.maxTokens) b.tokens = rl.maxTokens;
  return b;
}
