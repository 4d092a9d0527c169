// SPDX-License-Identifier: Apache-2.0
/**
 * The two charts, as plain SVG written here (no chart library): throughput
 * per mode (one panel per workload, bars at the median, whiskers from the
 * slowest to the fastest round) and the latency distribution per mode
 * (percentile on a "nines" axis, milliseconds on a log axis).
 */
import { MODE_COLORS } from './modes.ts';
import type { Spread } from './stats.ts';

const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fx = (x: number) => (Math.round(x * 10) / 10).toString();

function fmt(v: number): string {
  if (v === 0) return '0';
  if (v >= 10_000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** 1, 2 or 5 times a power of ten, so that about n ticks cover max. */
function niceStep(max: number, n = 4): number {
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

export interface BarPanel {
  title: string;
  unit: string;
  bars: Array<{ mode: string; spread: Spread }>;
}

const PANEL_W = 470;
const LABEL_W = 120;
const ROW_H = 22;

function panel(p: BarPanel, x0: number, y0: number, rows: number): string {
  const plotW = PANEL_W - LABEL_W - 60;
  const max = Math.max(...p.bars.map((b) => b.spread.max), 1e-9);
  const step = niceStep(max);
  const top = Math.ceil(max / step) * step;
  const sx = (v: number) => x0 + LABEL_W + (v / top) * plotW;
  const out: string[] = [`<text x="${x0}" y="${y0 + 14}" font-size="14" font-weight="bold" ${FONT}>${esc(p.title)} <tspan font-weight="normal" fill="#555">(${esc(p.unit)})</tspan></text>`];
  const plotTop = y0 + 26;
  const plotBottom = plotTop + rows * ROW_H;
  for (let v = 0; v <= top + step / 2; v += step) {
    out.push(`<line x1="${fx(sx(v))}" y1="${plotTop}" x2="${fx(sx(v))}" y2="${plotBottom}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${fx(sx(v))}" y="${plotBottom + 13}" font-size="10" text-anchor="middle" fill="#555" ${FONT}>${fmt(v)}</text>`);
  }
  p.bars.forEach((b, i) => {
    const y = plotTop + i * ROW_H;
    const color = MODE_COLORS[b.mode] ?? '#888';
    out.push(`<text x="${x0 + LABEL_W - 6}" y="${y + 15}" font-size="12" text-anchor="end" ${FONT}>${esc(b.mode)}</text>`);
    out.push(`<rect x="${x0 + LABEL_W}" y="${y + 4}" width="${fx(sx(b.spread.median) - sx(0))}" height="${ROW_H - 8}" fill="${color}"/>`);
    if (b.spread.n > 1) {
      const ym = y + ROW_H / 2;
      out.push(`<line x1="${fx(sx(b.spread.min))}" y1="${ym}" x2="${fx(sx(b.spread.max))}" y2="${ym}" stroke="#111" stroke-width="1.2"/>`);
      for (const v of [b.spread.min, b.spread.max]) out.push(`<line x1="${fx(sx(v))}" y1="${ym - 4}" x2="${fx(sx(v))}" y2="${ym + 4}" stroke="#111" stroke-width="1.2"/>`);
    }
    out.push(`<text x="${fx(sx(b.spread.max) + 5)}" y="${y + 15}" font-size="11" ${FONT}>${fmt(b.spread.median)}</text>`);
  });
  return out.join('\n');
}

/** Panels two by two; every panel lists the modes in the same order. */
export function throughputChart(panels: BarPanel[], subtitle: string): string {
  const rows = Math.max(1, ...panels.map((p) => p.bars.length));
  const panelH = 26 + rows * ROW_H + 30;
  const cols = panels.length > 1 ? 2 : 1;
  const width = cols * PANEL_W + 20;
  const height = 50 + Math.ceil(panels.length / cols) * panelH;
  const body = panels.map((p, i) => panel(p, 10 + (i % cols) * PANEL_W, 48 + Math.floor(i / cols) * panelH, rows));
  return svg(width, height, 'kernmesh bench: throughput per mode (bar: median; whisker: slowest to fastest round)', subtitle, body.join('\n'));
}

export interface LatencySeries {
  mode: string;
  points: Array<[number, number]>;
}

/** x: how many nines (log10 of 1/(1−p)); the maximum is left out (one sample says little). */
const nines = (p: number) => Math.log10(100 / (100 - p));

export function latencyChart(series: LatencySeries[], subtitle: string): string {
  const width = 900;
  const height = 460;
  const left = 70;
  const right = 170;
  const top = 60;
  const bottom = 50;
  const pts = series.map((s) => ({ ...s, points: s.points.filter(([p, v]) => p < 100 && v > 0) }));
  const all = pts.flatMap((s) => s.points.map(([, v]) => v));
  const lo = Math.min(...all, 1);
  const hi = Math.max(...all, lo * 2);
  const yMin = 10 ** Math.floor(Math.log10(lo));
  const yMax = 10 ** Math.ceil(Math.log10(hi));
  const xMax = 4; // 99.99 %
  const sx = (p: number) => left + (nines(p) / xMax) * (width - left - right);
  const sy = (v: number) => top + (1 - (Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (height - top - bottom);
  const out: string[] = [];
  for (let d = yMin; d <= yMax * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > yMax * 1.0001) break;
      out.push(`<line x1="${left}" y1="${fx(sy(v))}" x2="${width - right}" y2="${fx(sy(v))}" stroke="${m === 1 ? '#d1d5db' : '#f0f0f0'}"/>`);
      out.push(`<text x="${left - 6}" y="${fx(sy(v) + 4)}" font-size="10" text-anchor="end" fill="#555" ${FONT}>${v < 1 ? Number(v.toPrecision(1)) : v}</text>`);
    }
  }
  for (const p of [50, 90, 99, 99.9, 99.99]) {
    out.push(`<line x1="${fx(sx(p))}" y1="${top}" x2="${fx(sx(p))}" y2="${height - bottom}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${fx(sx(p))}" y="${height - bottom + 15}" font-size="11" text-anchor="middle" fill="#555" ${FONT}>p${p}</text>`);
  }
  out.push(`<text x="${(left + width - right) / 2}" y="${height - 12}" font-size="11" text-anchor="middle" ${FONT}>percentile</text>`);
  out.push(`<text x="16" y="${(top + height - bottom) / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 16 ${(top + height - bottom) / 2})" ${FONT}>latency (ms, log scale)</text>`);
  pts.forEach((s, i) => {
    const color = MODE_COLORS[s.mode] ?? '#888';
    const d = s.points.map(([p, v], j) => `${j ? 'L' : 'M'}${fx(sx(p))},${fx(sy(v))}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [p, v] of s.points) out.push(`<circle cx="${fx(sx(p))}" cy="${fx(sy(v))}" r="2.5" fill="${color}"/>`);
    const ly = top + 10 + i * 20;
    out.push(`<line x1="${width - right + 15}" y1="${ly}" x2="${width - right + 35}" y2="${ly}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${width - right + 40}" y="${ly + 4}" font-size="12" ${FONT}>${esc(s.mode)}</text>`);
  });
  return svg(width, height, 'kernmesh bench: latency at a fixed rate (coordinated omission corrected)', subtitle, out.join('\n'));
}

function svg(width: number, height: number, title: string, subtitle: string, body: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="16" font-weight="bold" ${FONT}>${esc(title)}</text>`,
    `<text x="10" y="36" font-size="11" fill="#555" ${FONT}>${esc(subtitle)}</text>`,
    body,
    '</svg>',
    '',
  ].join('\n');
}
