// SPDX-License-Identifier: Apache-2.0
/**
 * Rate limits for the whole node, however many proxy processes serve it.
 *
 * With proxy workers every process serves requests, and buckets kept in each
 * would let a node admit N times a limit. So the primary (the agent) keeps
 * the node's buckets, a TokenBank; a worker admits from credit the bank
 * granted it, and when a request finds none the worker asks for more and the
 * request waits for the answer (one IPC round trip). A grant covers several
 * requests while the bucket is full enough (at most 1/(2·processes) of what
 * is left, so no process starves the others), and it lapses at the end of
 * the fill interval (or quota window) it came from: a node never admits more
 * than its buckets allow. What lapses unused is lost, which matters only
 * when a limit is nearly spent, and then grants are a single request.
 * A bank that said "none left" is believed until its next fill, so a flood
 * of refused requests costs no round trips.
 *
 * Envoy keeps a local rate limit per process, shared by its threads; the
 * node proxy is one "process" made of several here, and this makes its
 * limits behave as one.
 */
import type { RoutingTable } from '../routing/table.ts';
import { type CompiledRateLimit, type Grant, admit, applies, grant } from './rate-limit.ts';

/** A worker's request for admissions from the node's buckets: every limit named, for one source. */
export interface TokenAsk {
  keys: string[];
  source: string;
  want: number;
}

/** true: admitted (tokens taken); false: refused; a promise: ask again once it settles (the answer is here then). */
export type Admission = boolean | Promise<void>;

export interface Admitter {
  admit(limits: CompiledRateLimit[], route: string | undefined, source: string, now: number): Admission;
}

/** One process alone: the buckets are its own, and every answer is immediate. */
export const localAdmitter: Admitter = { admit };

/** The most a worker asks for at once. */
const WANT = 256;
/** Past this many slots, lapsed ones are forgotten (and all of them if that is not enough): bounds memory under source churn. */
const MAX_SLOTS = 50_000;

interface Slot {
  credit: number;
  /** Unix ms at which the credit lapses. */
  expires: number;
  /**
   * Credit this low (a quarter of the last grant) asks for more ahead, while
   * requests are still admitted from what is left. Not when grants are down
   * to a few: then a limit is nearly spent, and credit asked for ahead would
   * sit here while other processes refuse.
   */
  lowWater: number;
  /** Unix ms before which the bank has nothing for this slot. */
  dryUntil: number;
}

/** Where credit is kept: one slot per limit, or per limit and caller when the caller has its own bucket or quota. */
function slotKey(rl: CompiledRateLimit, source: string): string {
  return rl.perSource || rl.quotas?.has(source) ? `${rl.key}\n${source}` : rl.key;
}

/** A worker's side: credit from the node's bank, and the asks under way. */
export class RateLimitLeases implements Admitter {
  private readonly slots = new Map<string, Slot>();
  private readonly asking = new Map<string, Promise<void>>();
  /** After the bank failed to answer: requests are admitted without asking until then (see onUnanswered). */
  private openUntil = 0;
  /**
   * Called when an ask failed (the agent did not answer in time). As Envoy's
   * rate limit filter does by default when its service fails, requests are
   * then admitted, for a second, rather than refused for a fault of the
   * mesh's own; the next ask after that tries the bank again.
   */
  onUnanswered: (err: Error) => void = () => {};

  private readonly ask: (a: TokenAsk) => Promise<Grant>;
  private readonly openMs: number;

  constructor(ask: (a: TokenAsk) => Promise<Grant>, openMs = 1000) {
    this.ask = ask;
    this.openMs = openMs;
  }

  admit(limits: CompiledRateLimit[], route: string | undefined, source: string, now: number): Admission {
    let missing: CompiledRateLimit[] | null = null;
    for (const rl of limits) {
      if (!applies(rl, route)) continue;
      const s = this.slots.get(slotKey(rl, source));
      if (s && s.dryUntil > now) return false;
      if (!s || s.credit < 1 || s.expires <= now) (missing ??= []).push(rl);
    }
    if (missing) return now < this.openUntil ? true : this.request(missing, source);
    let low: CompiledRateLimit[] | null = null;
    for (const rl of limits) {
      if (!applies(rl, route)) continue;
      const s = this.slots.get(slotKey(rl, source))!;
      if (--s.credit <= s.lowWater && s.lowWater > 0) (low ??= []).push(rl);
    }
    // Asked ahead, so a steady stream of requests never stops for the round trip.
    if (low) void this.request(low, source);
    return true;
  }

  /** One ask per set of limits and caller at a time: requests that find the same credit missing wait for the same answer. */
  private request(missing: CompiledRateLimit[], source: string): Promise<void> {
    const keys = missing.map((rl) => rl.key);
    const id = `${keys.join('\n')}\n\n${source}`;
    let p = this.asking.get(id);
    if (!p) {
      p = this.ask({ keys, source, want: WANT })
        .then(
          (g) => this.credit(missing, source, g),
          (err: Error) => {
            this.openUntil = Date.now() + this.openMs;
            this.onUnanswered(err);
          },
        )
        // Settled only after this runs: the waiting requests, routed again, never find this ask still listed.
        .finally(() => this.asking.delete(id));
      this.asking.set(id, p);
    }
    return p;
  }

  private credit(limits: CompiledRateLimit[], source: string, g: Grant): void {
    if (this.slots.size >= MAX_SLOTS) this.forgetLapsed(Date.now());
    for (const rl of limits) {
      const key = slotKey(rl, source);
      let s = this.slots.get(key);
      if (!s) this.slots.set(key, (s = { credit: 0, expires: 0, lowWater: 0, dryUntil: 0 }));
      if (g.granted > 0) {
        // Credit asked for ahead joins what is left of the same fill interval's; an older interval's has lapsed.
        s.credit = (s.expires === g.expires ? Math.max(0, s.credit) : 0) + g.granted;
        s.expires = g.expires;
        s.lowWater = Math.floor(g.granted / 4);
      }
      const until = g.dry[rl.key];
      if (until !== undefined) s.dryUntil = until;
    }
  }

  private forgetLapsed(now: number): void {
    for (const [k, s] of this.slots) if (s.expires <= now && s.dryUntil <= now) this.slots.delete(k);
    if (this.slots.size >= MAX_SLOTS) this.slots.clear();
  }
}

/** The primary's side: the node's buckets (its own routing table's), dealt out to workers on asking. */
export class TokenBank {
  private index: { table: RoutingTable; byKey: Map<string, CompiledRateLimit> } | null = null;

  /** table: the primary's current routing table; processes: how many share the node's limits (workers and the primary). */
  private readonly table: () => RoutingTable;
  private readonly processes: () => number;

  constructor(table: () => RoutingTable, processes: () => number) {
    this.table = table;
    this.processes = processes;
  }

  answer(ask: TokenAsk, now = Date.now()): Grant {
    const byKey = this.limitsOf(this.table());
    const limits: CompiledRateLimit[] = [];
    for (const k of ask.keys) {
      const rl = byKey.get(k);
      if (rl) limits.push(rl);
    }
    const want = Math.max(1, Math.min(WANT, Math.floor(ask.want) || 1));
    // Limits this table no longer has (the worker's is older): nothing to hold the request back, for a moment.
    if (!limits.length) return { granted: want, expires: now + 1000, dry: {} };
    return grant(limits, ask.source, now, want, this.processes());
  }

  private limitsOf(table: RoutingTable): Map<string, CompiledRateLimit> {
    if (this.index?.table !== table) {
      const byKey = new Map<string, CompiledRateLimit>();
      for (const svc of table.services.values()) for (const rl of svc.rateLimits) byKey.set(rl.key, rl);
      this.index = { table, byKey };
    }
    return this.index.byKey;
  }
}
