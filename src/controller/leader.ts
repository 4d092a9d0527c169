// SPDX-License-Identifier: Apache-2.0
/**
 * Leadership through Redis (local mode; in Kubernetes a coordination.k8s.io
 * Lease plays this part): SET NX with a TTL, renewed by its holder only
 * (compare-and-extend in Lua), so exactly one controller writes at a time and
 * a dead leader's claim runs out.
 */
import type { Redis } from 'ioredis';

/**
 * Acquire if free, extend if ours, in one step: 1 when renewed, 2 when acquired
 * anew, 0 when another holds it. A holder that finds its key gone (Redis
 * flushed, or restarted empty) acquires it anew: a new term, since whatever it
 * wrote in the last one may be gone with the key.
 */
const CLAIM = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0`;
const RENEWED = 1;
const ACQUIRED = 2;

export class RedisLeader {
  private readonly redis: Redis;
  private readonly key: string;
  readonly identity: string;
  private readonly ttlMs: number;
  private timer: NodeJS.Timeout | undefined;
  leading = false;
  private stopped = false;
  /** One claim at a time: an overlapping one must not see its own key as someone else's. */
  private inFlight: Promise<boolean> | undefined;
  /** Called when leadership is lost, and whenever it is acquired: true again (without a false between) starts a new term. */
  onChange: (leading: boolean) => void = () => {};

  constructor(redis: Redis, key: string, identity: string, ttlMs = 5000) {
    this.redis = redis;
    this.key = key;
    this.identity = identity;
    this.ttlMs = ttlMs;
  }

  /** One round: claim if free, renew if ours; lost on any failure (stop writing at once). */
  tick(): Promise<boolean> {
    this.inFlight ??= this.claim().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async claim(): Promise<boolean> {
    if (this.stopped) return false;
    let result: unknown = 0;
    try {
      result = await this.redis.eval(CLAIM, 1, this.key, this.identity, String(this.ttlMs));
    } catch {
      result = 0;
    }
    if (this.stopped) return false;
    const now = result === RENEWED || result === ACQUIRED;
    if (now !== this.leading || result === ACQUIRED) {
      this.leading = now;
      this.onChange(now);
    }
    return now;
  }

  start(): void {
    void this.tick();
    this.timer = setInterval(() => void this.tick(), Math.max(100, this.ttlMs / 3));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.inFlight;
    if (this.leading) {
      this.leading = false;
      this.onChange(false);
      // Step down at once rather than leave the others waiting out the TTL.
      await this.redis.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`, 1, this.key, this.identity).catch(() => {});
    }
  }
}

export async function currentLeader(redis: Redis, key: string): Promise<string | null> {
  return redis.get(key);
}
