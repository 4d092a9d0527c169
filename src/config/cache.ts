// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's last applied snapshot on disk, so that it can start and serve
 * while Redis is unreachable. Written atomically: a reader (the next start)
 * sees the old file or the new one, never half of one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
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

/** The cached snapshot, or undefined when there is none (or it is unreadable, or another mesh's). */
export function readCache(path: string, mesh: string): CachedSnapshot | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = JSON.parse(raw) as { format: number; mesh: string; version: number; lastId: string; objects: Array<[string, StoredObject]> };
    if (parsed.format !== FORMAT || parsed.mesh !== mesh) return undefined;
    return { mesh, version: parsed.version, lastId: parsed.lastId, objects: new Map(parsed.objects) };
  } catch {
    return undefined;
  }
}
