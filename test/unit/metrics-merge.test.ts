// SPDX-License-Identifier: Apache-2.0
// Adding up the proxy workers' expositions, and their per-service summaries.
import test from 'ava';
import { mergeExpositions } from '../../src/proxy/telemetry/merge.ts';
import { summarize } from '../../src/proxy/telemetry/metrics.ts';

test('samples of the same series are added up; families keep their HELP and TYPE once; label values with spaces survive', (t) => {
  const a = ['# HELP x_total Things', '# TYPE x_total counter', 'x_total{a="1"} 2', 'x_total{a="two words"} 1', '# HELP h A histogram', '# TYPE h histogram', 'h_bucket{le="1"} 1', 'h_sum 0.5', 'h_count 1', ''].join('\n');
  const b = ['# HELP x_total Things', '# TYPE x_total counter', 'x_total{a="1"} 3', 'x_total{a="3"} 7', '# HELP g Open', '# TYPE g gauge', 'g 4', ''].join('\n');
  t.is(
    mergeExpositions([a, b]),
    ['# HELP x_total Things', '# TYPE x_total counter', 'x_total{a="1"} 5', 'x_total{a="two words"} 1', 'x_total{a="3"} 7', '# HELP h A histogram', '# TYPE h histogram', 'h_bucket{le="1"} 1', 'h_sum 0.5', 'h_count 1', '# HELP g Open', '# TYPE g gauge', 'g 4', ''].join('\n'),
  );
});

test('summaries are added up before the quantiles are taken', (t) => {
  const buckets = (i: number, n: number) => Array.from({ length: 20 }, (_, k) => (k === i ? n : 0));
  const [s] = summarize([[{ service: 's', requests: 60, errors: 1, buckets: buckets(0, 60) }], [{ service: 's', requests: 40, errors: 2, buckets: buckets(10, 40) }]]);
  t.like(s, { service: 's', requests: 100, errors: 3, p50Ms: 0.5 });
  t.true(s!.p99Ms > 0.5);
});
