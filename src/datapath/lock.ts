// SPDX-License-Identifier: Apache-2.0
/** One owner per pin directory (or scratch area), by flock on a file under /run. */
import { closeSync, mkdirSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { KmError, errnoCode } from '../errors.ts';
import { addon } from './native.ts';

export const LOCK_DIR = '/run/kernmesh';

export function defaultLockPath(pinDir: string): string {
  return `${LOCK_DIR}/${pinDir.split('/').filter(Boolean).pop()}.lock`;
}

/** Takes the lock or says who has it; returns the fd to close to release it. */
export function takeLock(path: string, what: string): number {
  mkdirSync(dirname(path), { recursive: true });
  let fd: number;
  try {
    fd = addon().lockFile(path);
  } catch (err) {
    if (errnoCode(err) === 'EWOULDBLOCK' || errnoCode(err) === 'EAGAIN') {
      throw new KmError('KM_ERR_AGENT_RUNNING', `another kernmesh agent owns ${what} (lock ${path} is held): stop it first`, { cause: err });
    }
    throw new KmError('KM_ERR_LOCK', `cannot take the lock ${path} for ${what}: ${(err as Error).message}`, { cause: err });
  }
  writeSync(fd, `${process.pid}\n`, 0);
  return fd;
}

/** Whether someone holds the lock (false also when there is no lock file). */
export function lockHeld(path: string): boolean {
  try {
    closeSync(addon().lockFile(path));
    return false;
  } catch (err) {
    return errnoCode(err) === 'EWOULDBLOCK' || errnoCode(err) === 'EAGAIN';
  }
}
