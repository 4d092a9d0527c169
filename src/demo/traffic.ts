// SPDX-License-Identifier: Apache-2.0
/** `kernmesh demo traffic`: steady requests from the captured pod, shown live per service. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { formatTable } from '../cli/tables.ts';
import { inCgroup } from '../datapath/index.ts';
import { packageScript } from '../paths.ts';
import { RATINGS_LIMIT_PER_SECOND } from './rules.ts';
import { readState } from './state.ts';

/** One kind of request the load sends, at its own rate, and the answers the mesh's rules call for. */
export interface LoadTarget {
  row: string;
  url: string;
  method?: string;
  rps: number;
  expect: number[];
}

export interface LoadConfig {
  seconds: number;
  targets: LoadTarget[];
}

/** What the load saw of one row over a window (load-main.ts prints these). */
export interface RowCounts {
  row: string;
  requests: number;
  /** Answers with a status the row expects. */
  expected: number;
  /** By HTTP status, and "error" for no answer (refused, reset, 2 s timeout). */
  statuses: Record<string, number>;
  /** Successful answers by the replica version that gave them. */
  versions: Record<string, number>;
  p50: number;
  p99: number;
}

/** A row of the view and of `--json`: rates and shares over the window. */
export interface TrafficLine {
  service: string;
  rps: number;
  /** Share (0..1) of requests answered as the mesh's rules say they should be (0 when there were none). */
  expected: number;
  requests: number;
  statuses: Record<string, number>;
  versions: Record<string, number>;
  p50: number;
  p99: number;
}

/** Sends a 90/10 canary some traffic, ratings twice its rate limit, and DELETEs that a policy denies. */
export function loadTargets(vips: Record<string, string>): LoadTarget[] {
  return [
    { row: 'reviews', url: `http://${vips.reviews}/reviews/1`, rps: 30, expect: [200] },
    { row: 'ratings', url: `http://${vips.ratings}/ratings/1`, rps: 2 * RATINGS_LIMIT_PER_SECOND, expect: [200, 429] },
    { row: 'reviews DELETE', url: `http://${vips.reviews}/reviews/1`, method: 'DELETE', rps: 10, expect: [403] },
  ];
}

/** What the EXPECTED column counts, under the table. */
export const EXPECTED_LEGEND = `EXPECTED: answers the rules call for (reviews: 200 from v1 or v2, split 90/10; ratings: 200, or 429 past its limit of ${RATINGS_LIMIT_PER_SECOND}/s, sent twice that; reviews DELETE: 403, denied by policy)`;

export function toLines(rows: RowCounts[], seconds: number): TrafficLine[] {
  return rows.map((r) => ({
    service: r.row,
    rps: Math.round((r.requests / seconds) * 10) / 10,
    expected: r.requests ? r.expected / r.requests : 0,
    requests: r.requests,
    statuses: r.statuses,
    versions: r.versions,
    p50: r.p50,
    p99: r.p99,
  }));
}

export async function traffic(dir: string, seconds: number, onSecond: (lines: TrafficLine[], second: number) => void): Promise<TrafficLine[]> {
  const state = readState(dir);
  if (!state) throw new Error('no demo is up: run `npx kernmesh demo up` first');
  const cfg: LoadConfig = { seconds, targets: loadTargets(state.vips) };
  const cg = join(state.cgroupRoot, 'shop-productpage');
  const [sh, argv] = inCgroup(cg, '/run/netns/kmdemo-shop-productpage', process.execPath, [packageScript('demo/load-main'), JSON.stringify(cfg)]);
  const child = spawn(sh, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let total: TrafficLine[] | undefined;
  let second = 0;
  for await (const line of createInterface({ input: child.stdout! })) {
    const l = JSON.parse(line) as { kind: 'second' | 'total'; rows: RowCounts[] };
    if (l.kind === 'second') onSecond(toLines(l.rows, 1), ++second);
    else total = toLines(l.rows, seconds);
  }
  const code = await exited;
  if (!total) throw new Error(`the traffic generator stopped before its totals (exit code ${code})`);
  return total;
}

const pct = (n: number, of: number) => `${((n / of) * 100).toFixed(1)}%`;

/** "200 52.0%  429 48.0%": each status's share of the row's requests, most frequent first. */
function shares(counts: Record<string, number>): string {
  const n = Object.values(counts).reduce((a, b) => a + b, 0);
  if (n === 0) return '-';
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, v]) => `${k} ${pct(v, n)}`)
    .join('  ');
}

export function renderTraffic(lines: TrafficLine[]): string {
  return formatTable(
    ['SERVICE', 'RPS', 'EXPECTED', 'RESPONSES', 'VERSIONS', 'P50', 'P99'],
    lines.map((l) => [l.service, l.rps.toFixed(1), l.requests ? pct(l.expected, 1) : '-', shares(l.statuses), shares(l.versions), `${l.p50} ms`, `${l.p99} ms`]),
  );
}

/** One second of the live view: redrawn in place on a terminal, one block after another into a file or pipe. */
export function liveFrame(lines: TrafficLine[], second: number, tty: boolean): string {
  return tty ? `\x1b[2J\x1b[H${renderTraffic(lines)}\n` : `second ${second}:\n${renderTraffic(lines)}\n\n`;
}
