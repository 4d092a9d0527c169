// SPDX-License-Identifier: Apache-2.0
/**
 * Idle client connections are found by one sweep over every session every
 * few seconds, against a clock the sweep itself advances: no timer per
 * socket re-armed on every read (a measurable cost per request).
 */

export const IDLE_TIMEOUT_MS = 300_000;

export interface Expirable {
  /** Closes the connection if idle since before now - IDLE_TIMEOUT_MS; true when it did. */
  expireIfIdle(now: number): boolean;
}

const sessions = new Set<Expirable>();
let sweeper: NodeJS.Timeout | undefined;

/** The sweep's clock: good to a few seconds, free to read. */
export let coarseNow = Date.now();

export function watchIdle(s: Expirable): void {
  sessions.add(s);
  sweeper ??= setInterval(() => {
    coarseNow = Date.now();
    for (const x of sessions) if (x.expireIfIdle(coarseNow)) sessions.delete(x);
  }, 5000).unref();
}

export function unwatchIdle(s: Expirable): void {
  sessions.delete(s);
}
