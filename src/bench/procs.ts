// SPDX-License-Identifier: Apache-2.0
/**
 * Every process the bench starts: inside a cgroup (joined before exec) and,
 * when given, a network namespace, tracked by pid so that cleanup ends
 * exactly these and nothing else.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { inCgroup } from '../datapath/index.ts';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One started process; its output is collected as it comes. */
export class Proc {
  readonly child: ChildProcess;
  readonly name: string;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => {
      // 'close' rather than 'exit': the output is complete by then.
      child.once('close', (code, signal) => resolve((this.exit = { code, signal })));
      child.once('error', () => resolve((this.exit = { code: null, signal: null })));
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once stdout matches, rejects if the process exits first or time runs out. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const early = pattern.exec(this.stdout);
    if (early) return Promise.resolve(early);
    if (this.exit) return Promise.reject(new Error(`${this.name} exited (${this.exit.code ?? this.exit.signal}) before it was ready: ${this.stderr.trim().slice(-500)}`));
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(this.stdout);
        if (m) {
          done();
          resolve(m);
        }
      };
      const onExit = () => {
        check();
        done();
        reject(new Error(`${this.name} exited (${this.exit?.code ?? this.exit?.signal}) before it was ready: ${this.stderr.trim().slice(-500) || this.stdout.trim().slice(-500)}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name} was not ready after ${timeoutMs} ms: ${this.stderr.trim().slice(-500)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.child.stdout?.off('data', check);
        this.child.off('close', onExit);
      };
      this.child.stdout?.on('data', check);
      this.child.once('close', onExit);
      check();
    });
  }
}

export class Procs {
  private readonly live = new Set<Proc>();
  /** Every pid this bench started, for the record (and the test that nothing outlived it). */
  readonly pids: number[] = [];

  /** Starts cmd in cgroup (and netns, unless null); stdin is closed. */
  start(name: string, cgroup: string, netnsPath: string | null, cmd: string, args: string[]): Proc {
    const [sh, argv] = inCgroup(cgroup, netnsPath, cmd, args);
    const proc = new Proc(name, spawn(sh, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
    if (proc.pid > 0) this.pids.push(proc.pid);
    this.live.add(proc);
    void proc.exited.then(() => this.live.delete(proc));
    return proc;
  }

  /** start() and wait for the exit; a non-zero exit or a timeout rejects, with the output. */
  async run(name: string, cgroup: string, netnsPath: string | null, cmd: string, args: string[], timeoutMs: number): Promise<Proc> {
    const proc = this.start(name, cgroup, netnsPath, cmd, args);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.child.kill('SIGKILL');
    }, timeoutMs);
    const exit = await proc.exited;
    clearTimeout(timer);
    if (timedOut) throw new Error(`${name} did not finish within ${timeoutMs} ms`);
    if (exit.code !== 0) throw new Error(`${name} failed (${exit.code ?? exit.signal}): ${(proc.stderr.trim() || proc.stdout.trim()).slice(-800)}`);
    return proc;
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves once it is gone. */
  async stop(proc: Proc, graceMs = 2000): Promise<void> {
    if (!proc.alive) return void (await proc.exited);
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
    await proc.exited;
    clearTimeout(timer);
  }

  /** Kills whatever still runs (Ctrl-C, a failed run); by pid, never by name. */
  async killAll(): Promise<void> {
    await Promise.all(
      [...this.live].map(async (p) => {
        if (p.alive) p.child.kill('SIGKILL');
        await p.exited;
      }),
    );
  }

  get running(): number {
    return this.live.size;
  }
}
