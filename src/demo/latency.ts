// SPDX-License-Identifier: Apache-2.0
/**
 * Latency quantiles over any number of samples in fixed memory: a histogram
 * of logarithmic buckets 1 % wide, from 1 µs to about 10 minutes. A quantile
 * read from it is within 1 % of the exact one (and never outside the
 * smallest and largest sample).
 */

const MIN_MS = 0.001;
const GROWTH = 1.01;
const BUCKETS = Math.ceil(Math.log(600_000 / MIN_MS) / Math.log(GROWTH)) + 1;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  private min = Infinity;
  private max = -Infinity;

  record(ms: number): void {
    const i = ms <= MIN_MS ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(ms / MIN_MS) / Math.log(GROWTH)));
    this.counts[i]!++;
    this.count++;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  /** The p-quantile (0 < p ≤ 1) in ms, as the sample of rank ceil(p·n); 0 when empty. */
  quantile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(p * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        // The bucket's geometric middle: at most half a bucket (0.5 %) from any sample in it.
        const mid = MIN_MS * GROWTH ** (i + 0.5);
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }
}
