// SPDX-License-Identifier: Apache-2.0
/**
 * Idle client connections are found by one sweep over every session every
 * few seconds, against a clock the sweeps themselves advance: no timer per
 * socket re-armed on every read (a measurable cost per request).
 */

/** The default downstream idle timeout (the agent's proxyIdleTimeout). */
export const IDLE_TIMEOUT_MS = 300_000;

export interface Expirable {
  /** Closes the connection if idle since before now minus its idle timeout; true when it did. */
  expireIfIdle(now: number): boolean;
}

/** Sessions by how often they are swept (see sweepPeriodMs): one interval per period in use, kept as before. */
const sweeps = new Map<number, Set<Expirable>>();

/** The sweeps' clock: as good as the most frequent sweep, free to read. */
export let coarseNow = Date.now();

/**
 * Idle time is only measured to within a sweep's period (the clock and the
 * check both move by it), so a timeout is swept at a tenth of itself: within
 * 10% either way. At most every 5 s (the default's, as before), at least
 * every 10 ms (a shorter timeout is closer to "close between requests").
 */
function sweepPeriodMs(idleTimeoutMs: number): number {
  return Math.min(5000, Math.max(10, Math.ceil(idleTimeoutMs / 10)));
}

/** Sweeps s for its idle timeout; read coarseNow after (a new, shorter period sets the clock right first). */
export function watchIdle(s: Expirable, idleTimeoutMs: number): void {
  const period = sweepPeriodMs(idleTimeoutMs);
  let set = sweeps.get(period);
  if (!set) {
    // The clock may be a slower sweep's: this period's sessions must not start out already idle by its lag.
    coarseNow = Date.now();
    const mine = (set = new Set());
    sweeps.set(period, mine);
    setInterval(() => {
      coarseNow = Date.now();
      for (const x of mine) if (x.expireIfIdle(coarseNow)) mine.delete(x);
    }, period).unref();
  }
  set.add(s);
}

export function unwatchIdle(s: Expirable): void {
  for (const set of sweeps.values()) set.delete(s);
}
