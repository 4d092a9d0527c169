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
  for (const rl of limits) if (applies(rl, route) && roomFor(rl, source, now) < 1) return false;
  for (const rl of limits) if (applies(rl, route)) consume(rl, source, now, 1);
  return true;
}

export function applies(rl: CompiledRateLimit, route: string | undefined): boolean {
  return rl.route === undefined || rl.route === route;
}

/** What a worker process is given at once (see node-limits.ts). */
export interface Grant {
  /** Requests admitted: a token (and a quota count) taken from every limit asked for, this many times. */
  granted: number;
  /** Unix ms after which what was granted and not used is void: the end of the fill interval (or quota window) it came from. */
  expires: number;
  /** The limits that had no room: when each will have some again (Unix ms). */
  dry: Record<string, number>;
}

/**
 * Up to `want` admissions at once from every one of these limits (each
 * applies; the asker chose them), for a process that uses them on its own
 * later: at most 1/(2·shares) of what the emptiest limit has left, so the
 * other processes are never starved by one that asked first, and at least
 * one while there is room.
 */
export function grant(limits: CompiledRateLimit[], source: string, now: number, want: number, shares: number): Grant {
  let least = Infinity;
  let expires = Infinity;
  const dry: Record<string, number> = {};
  for (const rl of limits) {
    const room = roomFor(rl, source, now);
    least = Math.min(least, room);
    const next = nextRoomAt(rl, source, now);
    if (room < 1) dry[rl.key] = next;
    expires = Math.min(expires, next);
  }
  if (!(least >= 1)) return { granted: 0, expires: now, dry };
  const granted = Math.max(1, Math.min(want, Math.floor(least / (2 * shares))));
  for (const rl of limits) consume(rl, source, now, granted);
  return { granted, expires, dry };
}

/** How many more requests this limit admits now: its bucket's whole tokens, within the caller's quota. */
function roomFor(rl: CompiledRateLimit, source: string, now: number): number {
  const room = Math.floor(bucketOf(rl, source, now).tokens);
  const quota = rl.quotas?.get(source);
  return quota === undefined ? room : Math.min(room, quota - quotaOf(rl, source, now).used);
}

function consume(rl: CompiledRateLimit, source: string, now: number, n: number): void {
  bucketOf(rl, source, now).tokens -= n;
  if (rl.quotas?.has(source)) quotaOf(rl, source, now).used += n;
}

/** When this limit next gains room: its bucket's next fill, or its caller's next quota window if that is sooner. */
function nextRoomAt(rl: CompiledRateLimit, source: string, now: number): number {
  const fill = bucketOf(rl, source, now).last + rl.fillIntervalMs;
  return rl.quotas?.has(source) ? Math.min(fill, (Math.floor(now / rl.fillIntervalMs) + 1) * rl.fillIntervalMs) : fill;
}

/** The caller's quota count in the current window (one fill interval), started afresh in each window. */
function quotaOf(rl: CompiledRateLimit, source: string, now: number): { window: number; used: number } {
  const window = Math.floor(now / rl.fillIntervalMs);
  let q = rl.quotaUse.get(source);
  if (!q || q.window !== window) {
    q = { window, used: 0 };
    rl.quotaUse.set(source, q);
  }
  return q;
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
