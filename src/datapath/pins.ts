// SPDX-License-Identifier: Apache-2.0
/** Where the datapath may attach and pin, and removing what it pinned. */
import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { KmError, errnoCode } from '../errors.ts';
import { cgroup2Root, ensureBpffs, mounts } from './host.ts';
import { addon } from './native.ts';

export function removeEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

/** True when child is dir itself or below it. */
export function isUnder(child: string, dir: string): boolean {
  return child === dir || child.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

export function checkAttachCgroup(path: string): void {
  const root = cgroup2Root();
  if (path === root || !isUnder(path, root)) {
    throw new KmError('KM_ERR_CGROUP_OUTSIDE_ROOT', `refusing to attach to ${path}: give a cgroup below the cgroup2 mount ${root}, never its root`);
  }
  if (!existsSync(path)) {
    throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `cgroup ${path} does not exist: create it, or fix the attach cgroup (attachCgroup in the agent configuration)`);
  }
}

/** The filesystem type of the deepest mount holding path (undefined: no mount above it). */
export function mountTypeOf(path: string): string | undefined {
  return mounts()
    .filter((m) => isUnder(path, m.target))
    .sort((a, b) => b.target.length - a.target.length)[0]?.fstype;
}

export function checkPinDir(pinDir: string): void {
  ensureBpffs();
  if (mountTypeOf(pinDir) !== 'bpf') {
    throw new KmError('KM_ERR_BPFFS', `${pinDir} is not on a bpf filesystem: pins must live under a bpffs mount such as /sys/fs/bpf`);
  }
}

/**
 * Removes everything a (possibly dead) agent pinned under pinDir without
 * loading anything: the uninstall path. The caller holds the agent lock.
 */
export function cleanupPins(pinDir: string): string[] {
  const removed: string[] = [];
  if (!existsSync(pinDir)) return removed;
  const links = join(pinDir, 'links');
  if (existsSync(links)) {
    for (const name of readdirSync(links)) {
      if (addon().detachLink(join(links, name))) removed.push(join(links, name));
    }
    removeEmptyDir(links);
  }
  for (const name of readdirSync(pinDir)) {
    // Map pins: unlinking the last reference frees the map (and its sk_msg program).
    rmSync(join(pinDir, name), { force: true });
    removed.push(join(pinDir, name));
  }
  removeEmptyDir(pinDir);
  return removed;
}

/**
 * Waits until none of the given programs is loaded any more (the kernel frees
 * them shortly after their last link, map or fd goes); returns those left.
 */
export async function programsStillLoaded(ids: number[], timeoutMs = 3000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = ids.filter((id) => addon().programExists(id));
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 25));
  }
}
