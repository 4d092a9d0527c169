// SPDX-License-Identifier: Apache-2.0
/** `kernmesh demo traffic`: steady requests from the captured pod, shown live per service. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { formatTable } from '../cli/tables.ts';
import { inCgroup } from '../datapath/index.ts';
import { packageScript } from '../paths.ts';
import { readState } from './state.ts';

export interface TrafficLine {
  service: string;
  rps: number;
  success: number;
  p50: number;
  p99: number;
}

export async function traffic(dir: string, seconds: number, onSecond: (lines: TrafficLine[]) => void): Promise<TrafficLine[]> {
  const state = readState(dir);
  if (!state) throw new Error('no demo is up: run `kernmesh demo up` first');
  const loadMain = packageScript('demo/load-main');
  const cfg = {
    seconds,
    rps: 60,
    targets: [
      { service: 'reviews', url: `http://${state.vips.reviews}/reviews/1` },
      { service: 'reviews', url: `http://${state.vips.reviews}/reviews/2` },
      { service: 'ratings', url: `http://${state.vips.ratings}/ratings/1` },
      { service: 'reviews (DELETE, denied)', url: `http://${state.vips.reviews}/reviews/1`, method: 'DELETE' },
    ],
  };
  const cg = join(state.cgroupRoot, 'shop-productpage');
  const [sh, argv] = inCgroup(cg, '/run/netns/kmdemo-shop-productpage', process.execPath, [loadMain, JSON.stringify(cfg)]);
  const child = spawn(sh, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const all = new Map<string, TrafficLine>();
  let second: TrafficLine[] = [];
  let flush: NodeJS.Timeout | undefined;
  for await (const line of createInterface({ input: child.stdout! })) {
    const l = JSON.parse(line) as TrafficLine;
    second.push(l);
    const prev = all.get(l.service);
    all.set(l.service, prev ? { service: l.service, rps: prev.rps + l.rps, success: (prev.success * prev.rps + l.success * l.rps) / (prev.rps + l.rps || 1), p50: Math.max(prev.p50, l.p50), p99: Math.max(prev.p99, l.p99) } : l);
    clearTimeout(flush);
    flush = setTimeout(() => {
      onSecond(second);
      second = [];
    }, 50);
  }
  clearTimeout(flush);
  if (second.length) onSecond(second);
  return [...all.values()].map((x) => ({ ...x, rps: Math.round((x.rps / seconds) * 10) / 10 }));
}

export function renderTraffic(lines: TrafficLine[]): string {
  return formatTable(
    ['SERVICE', 'RPS', 'SUCCESS', 'P50', 'P99'],
    lines.map((l) => [l.service, String(l.rps), `${(l.success * 100).toFixed(1)}%`, `${l.p50} ms`, `${l.p99} ms`]),
  );
}
