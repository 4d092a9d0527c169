// SPDX-License-Identifier: Apache-2.0
/**
 * A throwaway corner of the machine for the selftest, the tests and the
 * demo: a child cgroup tree under the cgroup2 mount (never its root), a
 * network namespace whose only routes are its own loopback, and a per-run
 * pin directory. cleanup() removes all of it, also after a failure, and ends
 * only the processes it started, by pid.
 *
 * Each scratch area holds a lock for its lifetime, so a later run can tell
 * an abandoned one (lock free) from a live one (lock held) and sweep only
 * the abandoned.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from '../errors.ts';
import { cgroup2Root, ensureBpffs, ownCgroup } from './host.ts';
import { LOCK_DIR, releaseLock, takeLock, withLockIfFree } from './lock.ts';
import { cleanupPins } from './pins.ts';

let counter = 0;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The argv that runs cmd inside a cgroup (and a network namespace, if given):
 * the shell joins the cgroup before exec, so the command's first socket is
 * already the cgroup's.
 */
export function inCgroup(cgroup: string, netnsPath: string | null, cmd: string, args: string[]): [string, string[]] {
  return netnsPath
    ? ['sh', ['-c', 'cg=$1; ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="$ns" "$@"', 'sh', cgroup, netnsPath, cmd, ...args]]
    : ['sh', ['-c', 'cg=$1; shift; echo $$ > "$cg/cgroup.procs" && exec "$@"', 'sh', cgroup, cmd, ...args]];
}

const SCRATCH_NAME = /^kernmesh-[a-z]+-\d+-\d+$/;
const scratchLock = (id: string) => join(LOCK_DIR, `${id}.scratch.lock`);

export class Scratch {
  readonly id: string;
  readonly cgroupRoot: string;
  readonly netnsName: string;
  readonly netnsPath: string;
  readonly pinDir: string;
  /** The datapath's own lock for pinDir (separate from the scratch lock). */
  readonly lockPath: string;
  private readonly cgroups: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private restoreCgroup: string | undefined;
  private scratchLockFd: number | undefined;

  constructor(purpose: string) {
    this.id = `kernmesh-${purpose}-${process.pid}-${++counter}`;
    this.cgroupRoot = join(cgroup2Root(), this.id);
    this.netnsName = this.id;
    this.netnsPath = `/run/netns/${this.netnsName}`;
    this.pinDir = join(ensureBpffs(), this.id);
    this.lockPath = join(LOCK_DIR, `${this.id}.lock`);
  }

  /** Creates the cgroup root and the network namespace (lo up). */
  setup(): this {
    this.scratchLockFd = takeLock(scratchLock(this.id), this.id);
    mkdirSync(this.cgroupRoot);
    this.cgroups.push(this.cgroupRoot);
    execFileSync('ip', ['netns', 'add', this.netnsName], { stdio: 'pipe' });
    this.ip('link', 'set', 'lo', 'up');
    return this;
  }

  /** `ip -n <netns> ...` */
  ip(...args: string[]): void {
    execFileSync('ip', ['-n', this.netnsName, ...args], { stdio: 'pipe' });
  }

  /** A service VIP on the namespace's loopback: reachable only from inside it. */
  addVip(address: string): void {
    const v6 = address.includes(':');
    this.ip(...(v6 ? ['-6'] : []), 'addr', 'add', `${address}/${v6 ? 128 : 32}`, 'dev', 'lo', ...(v6 ? ['nodad'] : []));
  }

  /** A child cgroup of the scratch root. */
  cgroup(name: string): string {
    const path = join(this.cgroupRoot, name);
    if (!existsSync(path)) {
      mkdirSync(path);
      this.cgroups.push(path);
    }
    return path;
  }

  /** Moves this very process into a scratch cgroup until cleanup(). */
  enter(cgroupName: string): void {
    this.restoreCgroup ??= ownCgroup();
    writeFileSync(join(this.cgroup(cgroupName), 'cgroup.procs'), String(process.pid));
  }

  /** Starts cmd inside a scratch cgroup (and the namespace unless netns is false). */
  spawn(cgroupName: string, cmd: string, args: string[], options: { netns?: boolean } = {}): ChildProcess {
    const [sh, argv] = inCgroup(this.cgroup(cgroupName), (options.netns ?? true) ? this.netnsPath : null, cmd, args);
    const child = spawn(sh, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** spawn() and collect the output; input is written to stdin then closed. */
  run(cgroupName: string, cmd: string, args: string[], options: { netns?: boolean; input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const child = this.spawn(cgroupName, cmd, args, options);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin!.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    return new Promise((resolve) => {
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** Removes everything; every step runs even if an earlier one fails. Safe to call twice. */
  async cleanup(): Promise<string[]> {
    const problems: string[] = [];
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    };
    await step('stopping children', () => Promise.all([...this.children].map(killAndWait)));
    await step('leaving the scratch cgroup', () => {
      if (this.restoreCgroup) writeFileSync(join(this.restoreCgroup, 'cgroup.procs'), String(process.pid));
      this.restoreCgroup = undefined;
    });
    for (const cg of this.cgroups.splice(0).reverse()) {
      await step(`removing cgroup ${cg}`, async () => {
        if (!(await removeCgroup(cg))) throw new Error('still busy');
      });
    }
    await step(`removing netns ${this.netnsName}`, () => {
      if (existsSync(this.netnsPath)) execFileSync('ip', ['netns', 'del', this.netnsName], { stdio: 'pipe' });
    });
    await step('removing pins', () => {
      if (!existsSync(this.pinDir)) return;
      // Left only when the datapath was not closed with detach: remove them too, and say so.
      cleanupPins(this.pinDir);
      throw new Error(`pins were left under ${this.pinDir}`);
    });
    // The datapath's lock file, when its holder closed it without removing it (a datapath that was
    // never closed still holds it: then it stays).
    await step(`removing the lock ${this.lockPath}`, () => withLockIfFree(this.lockPath, () => {}));
    if (this.scratchLockFd !== undefined) {
      releaseLock(this.scratchLockFd, scratchLock(this.id));
      this.scratchLockFd = undefined;
    }
    return problems;
  }
}

function killAndWait(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/**
 * Removes what earlier scratch runs left behind when their process died
 * before cleanup (a killed test run): only scratch areas whose lock file
 * exists and is free. Returns what it removed.
 */
export function sweepStaleScratch(): string[] {
  if (!existsSync(LOCK_DIR)) return [];
  const removed: string[] = [];
  const ids = readdirSync(LOCK_DIR)
    .filter((f) => f.endsWith('.scratch.lock'))
    .map((f) => f.slice(0, -'.scratch.lock'.length))
    .filter((id) => SCRATCH_NAME.test(id));
  for (const id of ids) {
    // Swept while holding its lock: its owner is gone, and no one else can take it up meanwhile.
    withLockIfFree(scratchLock(id), () => sweepOne(id, removed));
  }
  return removed;
}

function sweepOne(id: string, removed: string[]): void {
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
      removed.push(what);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') removed.push(`${what} (failed: ${(err as Error).message})`);
    }
  };
  // The scratch namespace, and any a test made beside it under the same name (id-suffix).
  for (const ns of existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n === id || n.startsWith(`${id}-`)) : []) {
    attempt(`netns ${ns}`, () => execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' }));
  }
  const pins = join(ensureBpffs(), id);
  if (existsSync(pins)) attempt(`pins ${pins}`, () => cleanupPins(pins));
  const root = join(cgroup2Root(), id);
  if (existsSync(root)) {
    attempt(`cgroup ${root}`, () => {
      // Deepest first; a process still in them is not ours to kill: the rmdir fails and says so.
      const remove = (dir: string): void => {
        for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) remove(join(dir, e.name));
        rmdirSync(dir);
      };
      remove(root);
    });
  }
  // Its datapath's lock, when free (removed on the way).
  const lock = join(LOCK_DIR, `${id}.lock`);
  if (existsSync(lock)) withLockIfFree(lock, () => {});
}

/** rmdir, retrying while the kernel finishes emptying it (exiting tasks). */
async function removeCgroup(path: string): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(path);
      return true;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') return false;
      // Still populated by a child that has been killed but not yet freed.
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return false;
}
