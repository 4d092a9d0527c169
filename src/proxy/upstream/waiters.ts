// SPDX-License-Identifier: Apache-2.0
/**
 * HTTP/1.1 requests waiting for room under a service's
 * connectionPool.maxConnections, as Envoy's pending requests: a request that
 * finds no idle connection to its endpoint while the service holds all the
 * connections it may, waits (counted against maxPendingRequests, bounded by
 * its route's timeout) instead of being refused at once. It is woken when
 * one of the service's connections goes back to the pool for its endpoint,
 * or when one closes and so makes room to open another.
 *
 * Istio's circuit-breaking example (maxConnections 1,
 * http1MaxPendingRequests 1) depends on this: the second of two concurrent
 * requests is served after the first, and only the third is refused.
 */

export interface ConnWaiter {
  /** The pool address (inbound ones are pooled apart) and port it needs a connection to. */
  readonly address: string;
  readonly port: number;
  /** Runs once, on a later tick: look again for an idle connection or room to open one. */
  wake(): void;
}

/** A service's live counts (ServiceInfo.live) as the pool and the waiters see them. */
export interface ConnCounts {
  connections: number;
  pending: number;
  waiters: ConnWaiter[] | null;
}

/** Queues a request; at the front for one woken too late (another took what woke it), so it keeps its turn. */
export function waitForRoom(counts: ConnCounts, w: ConnWaiter, front = false): void {
  const q = (counts.waiters ??= []);
  if (front) q.unshift(w);
  else q.push(w);
  counts.pending++;
}

/** Takes a request out of the queue (its timeout, its client gone); false when it was not queued. */
export function stopWaiting(counts: ConnCounts, w: ConnWaiter): boolean {
  const q = counts.waiters;
  const i = q ? q.indexOf(w) : -1;
  if (i < 0) return false;
  q!.splice(i, 1);
  counts.pending--;
  return true;
}

function wake(counts: ConnCounts, w: ConnWaiter): void {
  counts.pending--;
  // Never from inside the caller's stack (a response's end, a socket's close): the woken request starts fresh.
  process.nextTick(() => w.wake());
}

/** One of the service's connections closed: the first request in line may open one. */
export function roomMade(counts: ConnCounts): void {
  const w = counts.waiters?.shift();
  if (w) wake(counts, w);
}

/**
 * A connection to address:port went back to the pool: the first request
 * waiting for that endpoint is woken to take it. False when no request
 * waits for it while others wait for other endpoints: then it should
 * close, to make room for theirs.
 */
export function pooledFor(counts: ConnCounts, address: string, port: number): boolean {
  const q = counts.waiters;
  if (!q || q.length === 0) return true;
  const i = q.findIndex((w) => w.address === address && w.port === port);
  if (i < 0) return false;
  const [w] = q.splice(i, 1);
  wake(counts, w!);
  return true;
}
