// SPDX-License-Identifier: Apache-2.0
/**
 * Choosing an endpoint: healthy ones only (outlier detection ejects the
 * failing), this node's zone first (with failover), then the cluster's
 * algorithm: weighted round robin, least request (power of two choices),
 * random, ring hash or maglev on a header, a cookie or the source address.
 */
import type { Head } from '../http1/parse.ts';
import { header } from '../http1/parse.ts';
import type { EndpointInfo, ServiceInfo } from '../routing/table.ts';
import { RoundRobin } from './round-robin.ts';

export type LbType = 'round_robin' | 'least_request' | 'random' | 'ring_hash' | 'maglev';

export interface LbPolicy {
  type: LbType;
  hashOn?: { header: string } | { cookie: string } | { sourceIp: true };
  locality?: { enabled: boolean; failover: Array<{ from: string; to: string }> };
}

export interface OutlierPolicy {
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  /** Each interval without an ejection takes one off an endpoint's ejection count. */
  intervalMs: number;
  maxEjectionPercent: number;
}

interface EndpointState {
  active: number;
  consecutive5xx: number;
  consecutiveGateway: number;
  ejectedUntil: number;
  ejections: number;
}

const MAGLEV_SIZE = 65537;

/**
 * FNV-1a, 32 bits, with murmur3's finalizer: stable across processes (every
 * worker hashes a key the same way), and keys that differ only at the end
 * ("user-1", "user-2") still land far apart on the ring.
 */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const epKey = (svc: string, e: EndpointInfo) => `${svc}|${e.address}:${e.port}`;

export class Balancer {
  private readonly state = new Map<string, EndpointState>();
  private readonly rr = new RoundRobin();
  private readonly rings = new WeakMap<EndpointInfo[], { points: Uint32Array; owners: EndpointInfo[] }>();
  private readonly maglevs = new WeakMap<EndpointInfo[], Array<EndpointInfo | undefined>>();
  /** This node's zone, for locality-aware choice. */
  zone: string | undefined;
  ejectionsTotal = 0;

  /** State by endpoint object: the string key is built once per endpoint per routing table, not per request. */
  private readonly byEndpoint = new WeakMap<EndpointInfo, EndpointState>();

  /** An endpoint's state; it outlives table swaps, since the string key is the same in the next table. */
  private st(svc: ServiceInfo, e: EndpointInfo): EndpointState {
    let s = this.byEndpoint.get(e);
    if (s) return s;
    const key = epKey(svc.key, e);
    s = this.state.get(key);
    if (!s) {
      s = { active: 0, consecutive5xx: 0, consecutiveGateway: 0, ejectedUntil: 0, ejections: 0 };
      this.state.set(key, s);
    }
    this.byEndpoint.set(e, s);
    return s;
  }

  pick(svc: ServiceInfo, eps: EndpointInfo[], head: Head | null, peerIp: string): EndpointInfo | undefined {
    if (eps.length === 0) return undefined;
    let candidates = this.healthy(svc, eps);
    const lb = svc.lb;
    if (lb.locality?.enabled && this.zone) candidates = this.byLocality(candidates, lb.locality.failover);
    switch (lb.type) {
      case 'round_robin':
        return this.rr.pick(candidates);
      case 'random':
        return weightedRandom(candidates);
      case 'least_request': {
        if (candidates.length === 1) return candidates[0];
        const a = candidates[Math.floor(Math.random() * candidates.length)]!;
        let b = candidates[Math.floor(Math.random() * candidates.length)]!;
        if (b === a) b = candidates[(candidates.indexOf(a) + 1) % candidates.length]!;
        // Active requests per unit of weight: an endpoint of weight 3 is as busy with 3 as one of weight 1 with 1.
        return this.st(svc, a).active * b.weight <= this.st(svc, b).active * a.weight ? a : b;
      }
      case 'ring_hash':
        return this.ringPick(candidates, this.hashKey(lb, head, peerIp));
      case 'maglev':
        return this.maglevPick(candidates, this.hashKey(lb, head, peerIp));
    }
  }

  private hashKey(lb: LbPolicy, head: Head | null, peerIp: string): number {
    const on = lb.hashOn;
    let key: string | undefined;
    if (on && 'header' in on) key = head ? header(head, on.header.toLowerCase()) : undefined;
    else if (on && 'cookie' in on) key = head ? cookie(header(head, 'cookie'), on.cookie) : undefined;
    else key = peerIp;
    // No key: any endpoint will do; a random one spreads such requests.
    return key === undefined ? (Math.random() * 0x100000000) >>> 0 : fnv1a(key);
  }

  /**
   * The endpoints not ejected (all of them when every one is). The same list
   * object comes back while the same endpoints are out: round robin and the
   * hash rings keep their state by list, and a fresh list per request would
   * reset round robin to the first endpoint and rebuild a ring every time.
   */
  private healthy(svc: ServiceInfo, eps: EndpointInfo[]): EndpointInfo[] {
    if (!svc.outlier) return eps;
    const now = Date.now();
    let ejected = '';
    for (let i = 0; i < eps.length; i++) if (this.st(svc, eps[i]!).ejectedUntil > now) ejected += `${i},`;
    if (ejected === '') return eps;
    const cached = this.healthyLists.get(eps);
    if (cached?.ejected === ejected) return cached.list;
    const ok = eps.filter((e) => this.st(svc, e).ejectedUntil <= now);
    const list = ok.length ? ok : eps;
    this.healthyLists.set(eps, { ejected, list });
    return list;
  }

  private readonly healthyLists = new WeakMap<EndpointInfo[], { ejected: string; list: EndpointInfo[] }>();

  /** This zone's endpoints, else the failover zone's, else all: one list object per input list and zone (see healthy). */
  private byLocality(eps: EndpointInfo[], failover: Array<{ from: string; to: string }>): EndpointInfo[] {
    const cached = this.localLists.get(eps);
    if (cached && cached.zone === this.zone) return cached.list;
    let list = eps.filter((e) => e.zone === this.zone);
    for (const f of failover) {
      if (list.length) break;
      if (f.from === this.zone) list = eps.filter((e) => e.zone === f.to);
    }
    if (!list.length) list = eps;
    this.localLists.set(eps, { zone: this.zone, list });
    return list;
  }

  private readonly localLists = new WeakMap<EndpointInfo[], { zone: string | undefined; list: EndpointInfo[] }>();

  private ringPick(eps: EndpointInfo[], h: number): EndpointInfo {
    let ring = this.rings.get(eps);
    if (!ring) {
      const pts: Array<[number, EndpointInfo]> = [];
      for (const e of eps) for (let i = 0; i < 64 * e.weight; i++) pts.push([fnv1a(`${e.address}:${e.port}#${i}`), e]);
      pts.sort((a, b) => a[0] - b[0]);
      ring = { points: Uint32Array.from(pts.map((p) => p[0])), owners: pts.map((p) => p[1]) };
      this.rings.set(eps, ring);
    }
    // The first point at or after h, wrapping around.
    let lo = 0;
    let hi = ring.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return ring.owners[lo === ring.points.length ? 0 : lo]!;
  }

  /** Undefined when no endpoint has a positive weight: the table is empty. */
  private maglevPick(eps: EndpointInfo[], h: number): EndpointInfo | undefined {
    let table = this.maglevs.get(eps);
    if (!table) {
      table = buildMaglev(eps);
      this.maglevs.set(eps, table);
    }
    return table[h % MAGLEV_SIZE];
  }

  begin(svc: ServiceInfo, ep: EndpointInfo): void {
    this.st(svc, ep).active++;
  }

  end(svc: ServiceInfo, ep: EndpointInfo): void {
    const s = this.st(svc, ep);
    if (s.active > 0) s.active--;
  }

  /** Outlier accounting for one finished attempt: a status, or a connect failure (0). */
  report(svc: ServiceInfo, eps: EndpointInfo[], ep: EndpointInfo, status: number): void {
    const o = svc.outlier;
    if (!o) return;
    const s = this.st(svc, ep);
    const gateway = status === 0 || status === 502 || status === 503 || status === 504;
    if (status >= 500 || status === 0) s.consecutive5xx++;
    else s.consecutive5xx = 0;
    if (gateway) s.consecutiveGateway++;
    else s.consecutiveGateway = 0;
    if (s.consecutive5xx < o.consecutive5xx && s.consecutiveGateway < o.consecutiveGatewayErrors) return;
    const now = Date.now();
    const ejected = eps.filter((e) => this.st(svc, e).ejectedUntil > now).length;
    // A cap on the ejected share, but one ejection is always allowed (as in Envoy).
    if (ejected >= Math.max(1, Math.floor((eps.length * o.maxEjectionPercent) / 100))) return;
    // Each ejection of the same endpoint lasts longer (base × count, up to the maximum), and the count
    // drops by one for every interval the endpoint has since gone without one, as in Envoy.
    if (s.ejections > 0 && now > s.ejectedUntil) s.ejections = Math.max(0, s.ejections - Math.floor((now - s.ejectedUntil) / o.intervalMs));
    s.ejections++;
    s.ejectedUntil = now + Math.min(o.baseEjectionMs * s.ejections, Math.max(o.maxEjectionMs, o.baseEjectionMs));
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    this.ejectionsTotal++;
    this.onEject?.(svc.key);
  }

  /** Told of each ejection (the metrics count them). */
  onEject: ((service: string) => void) | undefined;

  ejectedNow(svc: ServiceInfo, eps: EndpointInfo[]): number {
    const now = Date.now();
    return eps.filter((e) => this.st(svc, e).ejectedUntil > now).length;
  }
}

/** One endpoint, with chances in proportion to the weights. */
function weightedRandom(eps: EndpointInfo[]): EndpointInfo | undefined {
  let total = 0;
  for (const e of eps) total += e.weight;
  let r = Math.random() * total;
  for (const e of eps) {
    r -= e.weight;
    if (r < 0) return e;
  }
  return eps[eps.length - 1];
}

function cookie(raw: string | undefined, name: string): string | undefined {
  if (!raw) return undefined;
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Maglev's lookup table (Eisenbud et al., NSDI 2016), weights by repeated turns.
 * An endpoint of weight 0 (or less) takes no turn, so it gets no slot; when no
 * endpoint has a positive weight the table is empty (every lookup misses: no
 * healthy upstream) instead of going round for ever placing nothing.
 */
function buildMaglev(all: EndpointInfo[]): Array<EndpointInfo | undefined> {
  const eps = all.filter((e) => e.weight > 0);
  const n = eps.length;
  if (n === 0) return [];
  const offset = eps.map((e) => fnv1a(`${e.address}:${e.port}`) % MAGLEV_SIZE);
  const skip = eps.map((e) => (fnv1a(`skip:${e.address}:${e.port}`) % (MAGLEV_SIZE - 1)) + 1);
  const next = new Array<number>(n).fill(0);
  const table = new Array<EndpointInfo | undefined>(MAGLEV_SIZE);
  let filled = 0;
  while (filled < MAGLEV_SIZE) {
    for (let i = 0; i < n && filled < MAGLEV_SIZE; i++) {
      for (let turn = 0; turn < eps[i]!.weight && filled < MAGLEV_SIZE; turn++) {
        let c = (offset[i]! + next[i]! * skip[i]!) % MAGLEV_SIZE;
        while (table[c] !== undefined) {
          next[i]!++;
          c = (offset[i]! + next[i]! * skip[i]!) % MAGLEV_SIZE;
        }
        table[c] = eps[i];
        next[i]!++;
        filled++;
      }
    }
  }
  return table;
}
