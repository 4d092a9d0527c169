// SPDX-License-Identifier: Apache-2.0
/**
 * One owner per pin directory (or scratch area), by flock on a file under /run.
 *
 * The file exists only while someone holds it: its holder unlinks it before
 * letting go (releaseLock), so nothing is left behind. That alone would break
 * flock: a process that opened the file just before the unlink would lock
 * the old, nameless inode while the next one creates and locks a new file.
 * So a lock counts only when, once flocked, the path still names the inode
 * that was locked; otherwise it is dropped and taken again. Only a holder
 * unlinks, so a checked lock stays named by its path until released.
 * A holder that dies leaves its file; the next taker locks and reuses it.
 */
import { closeSync, fstatSync, mkdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { KmError, errnoCode } from '../errors.ts';
import { addon } from './native.ts';

export const LOCK_DIR = '/run/kernmesh';

export function defaultLockPath(pinDir: string): string {
  return `${LOCK_DIR}/${pinDir.split('/').filter(Boolean).pop()}.lock`;
}

const held = (err: unknown) => errnoCode(err) === 'EWOULDBLOCK' || errnoCode(err) === 'EAGAIN';

/** Whether path still names the file open as fd (not unlinked, not replaced). */
function stillNamed(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/** The fd of a checked lock on path, or undefined when another process holds it. Throws other failures as they are. */
function tryLock(path: string): number | undefined {
  // Each retry means a holder released between our open and our flock: it cannot go on for long.
  for (let attempt = 0; attempt < 1000; attempt++) {
    let fd: number;
    try {
      fd = addon().lockFile(path);
    } catch (err) {
      if (held(err)) return undefined;
      throw err;
    }
    if (stillNamed(fd, path)) return fd;
    closeSync(fd);
  }
  throw new Error(`${path} kept being replaced while it was being locked`);
}

/** Takes the lock or says who has it; returns the fd to give releaseLock (or close, which leaves the file). */
export function takeLock(path: string, what: string): number {
  let fd: number | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    fd = tryLock(path);
  } catch (err) {
    throw new KmError('KM_ERR_LOCK', `cannot take the lock ${path} for ${what}: ${(err as Error).message}`, { cause: err });
  }
  if (fd === undefined) throw new KmError('KM_ERR_AGENT_RUNNING', `another kernmesh agent owns ${what} (lock ${path} is held): stop it first`);
  writeSync(fd, `${process.pid}\n`, 0);
  return fd;
}

/** Lets go of a lock from takeLock and removes its file (unlinked while still held: see above). */
export function releaseLock(fd: number, path: string): void {
  try {
    rmSync(path, { force: true });
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether someone holds the lock (false also when there is no lock file). A
 * free lock's file is removed on the way, as its last holder would have.
 */
export function lockHeld(path: string): boolean {
  try {
    statSync(path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
  const fd = tryLock(path);
  if (fd === undefined) return true;
  releaseLock(fd, path);
  return false;
}

/** Runs fn holding the lock, if it is free (true), or does nothing (false): for sweeping what a dead owner left. */
export function withLockIfFree(path: string, fn: () => void): boolean {
  const fd = tryLock(path);
  if (fd === undefined) return false;
  try {
    fn();
  } finally {
    releaseLock(fd, path);
  }
  return true;
}
