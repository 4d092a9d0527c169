// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's last applied snapshot on disk, so that it can start and serve
 * while Redis is unreachable. Written atomically: a reader (the next start)
 * sees the old file or the new one, never half of one.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from '../errors.ts';
import type { StoredObject } from './store.ts';

const FORMAT = 1;

export interface CachedSnapshot {
  mesh: string;
  version: number;
  lastId: string;
  objects: Map<string, StoredObject>;
}

export function writeCache(path: string, snap: CachedSnapshot): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const body = JSON.stringify({ format: FORMAT, mesh: snap.mesh, version: snap.version, lastId: snap.lastId, objects: [...snap.objects] });
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  // The rename itself must reach the disk too.
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export type CacheRead = { snapshot: CachedSnapshot } | { missing: true } | { damaged: string };

/**
 * The cached snapshot; missing when there is no file; damaged (and why) when
 * there is one that cannot be used: unreadable, not JSON, another format, or
 * another mesh's. A damaged file is not for the caller to drop silently: it
 * is the only copy of what the agent last served (see setAside).
 */
export function readCache(path: string, mesh: string): CacheRead {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { missing: true };
    return { damaged: `cannot be read: ${(err as Error).message}` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    return { damaged: `not valid JSON (${raw.length} bytes; a truncated write?): ${(err as Error).message}` };
  }
  const p = parsed as { format?: unknown; mesh?: unknown; version?: unknown; lastId?: unknown; objects?: unknown };
  if (typeof p !== 'object' || p === null || p.format !== FORMAT) return { damaged: `not a format-${FORMAT} mesh snapshot (format: ${JSON.stringify(p?.format)})` };
  if (p.mesh !== mesh) return { damaged: `the snapshot of mesh ${JSON.stringify(p.mesh)}, not of ${JSON.stringify(mesh)}` };
  if (!Number.isSafeInteger(p.version) || (p.version as number) < 0 || typeof p.lastId !== 'string' || !/^\d+-\d+$/.test(p.lastId)) return { damaged: 'its version or stream position is missing or malformed' };
  if (!Array.isArray(p.objects) || !p.objects.every(isEntry)) return { damaged: 'its objects are missing or malformed' };
  return { snapshot: { mesh, version: p.version as number, lastId: p.lastId, objects: new Map(p.objects as Array<[string, StoredObject]>) } };
}

function isEntry(e: unknown): boolean {
  if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') return false;
  const o = e[1] as { version?: unknown; object?: { kind?: unknown; metadata?: unknown } } | null;
  return typeof o === 'object' && o !== null && Number.isSafeInteger(o.version) && typeof o.object?.kind === 'string' && typeof o.object.metadata === 'object' && o.object.metadata !== null;
}

/** How many damaged copies of one cache path are kept: enough to look at, never a directory filling up. */
export const DAMAGED_KEPT = 3;

/**
 * Moves a damaged cache file to "<path>.damaged-<time>", where it is kept for
 * a person to look at, with the newest copies set aside before it (older ones
 * are removed: a node that keeps hitting a damaged cache would otherwise fill
 * its disk with them); returns that path.
 */
export function setAside(path: string, now = new Date()): string {
  const base = `${path}.damaged-${now.toISOString().replace(/[:.]/g, '-')}`;
  // Never over an earlier one (two in one millisecond): each is somebody's only copy.
  let aside = base;
  for (let i = 1; existsSync(aside); i++) aside = `${base}-${i}`;
  renameSync(path, aside);
  pruneDamaged(path, basename(aside));
  return aside;
}

/** What setAside appends to a cache file's name: ".damaged-" and an ISO time with "-" for ":" and ".", maybe "-n". */
const DAMAGED_SUFFIX = /^\.damaged-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)(?:-(\d+))?$/;

/**
 * Removes all but the newest DAMAGED_KEPT copies of path (by the time in
 * their names; kept, the one just made). Only names setAside makes for this
 * very path are touched: nothing else in the directory is ever removed. Best
 * effort: a copy that cannot be removed stays, and the set-aside still holds.
 */
function pruneDamaged(path: string, kept: string): void {
  const dir = dirname(path);
  const name = basename(path);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const older = names.flatMap((n) => {
    const m = n !== kept && n.startsWith(name) ? DAMAGED_SUFFIX.exec(n.slice(name.length)) : null;
    return m ? [{ n, at: m[1]!, i: Number(m[2] ?? 0) }] : [];
  });
  // Newest first: by time, then by the suffix two in one millisecond got.
  older.sort((a, b) => (a.at === b.at ? b.i - a.i : a.at < b.at ? 1 : -1));
  for (const { n } of older.slice(DAMAGED_KEPT - 1)) {
    try {
      unlinkSync(join(dir, n));
    } catch {
      // Left where it is: one more copy than wanted, never a failed set-aside.
    }
  }
}
