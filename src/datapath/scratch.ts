// SPDX-License-Identifier: Apache-2.0
/**
 * A throwaway corner of the machine for the selftest, the tests and the
 * demo: a child cgroup tree under the cgroup2 mount (never its root), a
 * network namespace whose only routes are its own loopback, and a per-run
 * pin directory. cleanup() removes all of it, also after a failure, and ends
 * only the processes it started, by pid.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupPins } from './ebpf.ts';
import { cgroup2Root, ensureBpffs, ownCgroup } from './host.ts';

let counter = 0;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class Scratch {
  readonly id: string;
  readonly cgroupRoot: string;
  readonly netnsName: string;
  readonly netnsPath: string;
  readonly pinDir: string;
  readonly lockPath: string;
  private readonly cgroups: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private restoreCgroup: string | undefined;

  constructor(purpose: string) {
    this.id = `kernmesh-${purpose}-${process.pid}-${++counter}`;
    this.cgroupRoot = join(cgroup2Root(), this.id);
    this.netnsName = this.id.slice(0, 60);
    this.netnsPath = `/run/netns/${this.netnsName}`;
    this.pinDir = join(ensureBpffs(), this.id);
    this.lockPath = `/run/kernmesh/${this.id}.lock`;
  }

  /** Creates the cgroup root and the network namespace (lo up). */
  setup(): this {
    mkdirSync(this.cgroupRoot);
    this.cgroups.push(this.cgroupRoot);
    execFileSync('ip', ['netns', 'add', this.netnsName]);
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

  /**
   * Starts cmd inside a scratch cgroup (and the namespace unless netns is
   * false). The shell joins the cgroup before exec, so the command's first
   * socket is already the cgroup's.
   */
  spawn(cgroupName: string, cmd: string, args: string[], options: { netns?: boolean } = {}): ChildProcess {
    const cg = this.cgroup(cgroupName);
    const inNetns = options.netns ?? true;
    const script = inNetns
      ? 'cg=$1; ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="$ns" "$@"'
      : 'cg=$1; shift 2; echo $$ > "$cg/cgroup.procs" && exec "$@"';
    const child = spawn('sh', ['-c', script, 'sh', cg, this.netnsPath, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
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

  /** Removes everything; safe to call twice, and after a partial setup. */
  async cleanup(): Promise<string[]> {
    const problems: string[] = [];
    await Promise.all(
      [...this.children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    if (this.restoreCgroup) {
      writeFileSync(join(this.restoreCgroup, 'cgroup.procs'), String(process.pid));
      this.restoreCgroup = undefined;
    }
    for (const cg of this.cgroups.splice(0).reverse()) {
      if (!(await removeCgroup(cg))) problems.push(`cgroup ${cg} could not be removed`);
    }
    if (existsSync(this.netnsPath)) {
      try {
        execFileSync('ip', ['netns', 'del', this.netnsName], { stdio: 'pipe' });
      } catch (err) {
        problems.push(`netns ${this.netnsName}: ${(err as Error).message}`);
      }
    }
    rmSync(this.lockPath, { force: true });
    if (existsSync(this.pinDir)) {
      // Pins left only if the datapath was not closed with detach: remove them too.
      rmSync(this.pinDir, { recursive: true, force: true });
      problems.push(`pins were left under ${this.pinDir}`);
    }
    return problems;
  }
}

const SCRATCH_NAME = /^kernmesh-[a-z]+-(\d+)-\d+$/;

/**
 * Removes what earlier scratch runs left behind when their process died
 * before cleanup (a killed test run): only names of the scratch pattern whose
 * owning pid is gone. Returns what it removed.
 */
export function sweepStaleScratch(): string[] {
  const dead = (name: string) => {
    const m = SCRATCH_NAME.exec(name);
    return !!m && !existsSync(`/proc/${m[1]}`);
  };
  const removed: string[] = [];
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  for (const name of netns.filter(dead)) {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
    removed.push(`netns ${name}`);
  }
  const bpffs = ensureBpffs();
  for (const name of readdirSync(bpffs).filter(dead)) {
    removed.push(...cleanupPins(join(bpffs, name)).map((p) => `pin ${p}`));
  }
  const cg2 = cgroup2Root();
  for (const name of readdirSync(cg2).filter(dead)) {
    const root = join(cg2, name);
    // Children first; a leftover process in them is not ours to kill (its owner is gone).
    for (const child of readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory())) {
      try {
        rmdirSync(join(root, child.name));
      } catch {
        /* still populated: reported by the rmdir of the root below */
      }
    }
    try {
      rmdirSync(root);
      removed.push(`cgroup ${root}`);
    } catch {
      removed.push(`cgroup ${root} (busy, left)`);
    }
  }
  if (existsSync('/run/kernmesh')) {
    for (const name of readdirSync('/run/kernmesh').filter((n) => dead(n.replace(/\.lock$/, '')))) {
      rmSync(join('/run/kernmesh', name), { force: true });
    }
  }
  return removed;
}

/** rmdir, retrying while the kernel finishes emptying it (exiting tasks). */
async function removeCgroup(path: string): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(path);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') return false;
      // Still populated by a child that has been killed but not yet freed.
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return false;
}
