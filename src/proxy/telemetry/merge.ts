// SPDX-License-Identifier: Apache-2.0
/**
 * One Prometheus exposition from several processes' (the proxy workers'):
 * samples of the same series are added up. Every series the proxy exports
 * is additive (counters, histogram buckets, sums and counts, and gauges of
 * open connections and idle pooled ones), so the sum is the node's figure.
 * prom-client's AggregatorRegistry does this for its own registries; the
 * proxy's HTTP series are rendered by hand for speed, so the merge works on
 * the text.
 */
export function mergeExpositions(texts: readonly string[]): string {
  const families: string[] = [];
  const meta = new Map<string, string[]>();
  const samples = new Map<string, Map<string, number>>();
  for (const text of texts) {
    let family = '';
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (line.startsWith('#')) {
        const name = line.split(' ')[2] ?? '';
        if (name !== family) {
          family = name;
          if (!meta.has(name)) {
            meta.set(name, []);
            samples.set(name, new Map());
            families.push(name);
          }
        }
        const m = meta.get(name)!;
        if (!m.includes(line)) m.push(line);
        continue;
      }
      // "series value": the series is everything before the last space (label values may hold spaces).
      const at = line.lastIndexOf(' ');
      const series = line.slice(0, at);
      const value = Number(line.slice(at + 1));
      if (!samples.has(family)) {
        families.push(family);
        meta.set(family, []);
        samples.set(family, new Map());
      }
      const bucket = samples.get(family)!;
      bucket.set(series, (bucket.get(series) ?? 0) + value);
    }
  }
  const out: string[] = [];
  for (const f of families) {
    out.push(...meta.get(f)!);
    for (const [series, value] of samples.get(f)!) out.push(`${series} ${value}`);
  }
  return `${out.join('\n')}\n`;
}
