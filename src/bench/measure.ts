// SPDX-License-Identifier: Apache-2.0
/**
 * What a run costs, read where the kernel publishes it: a cgroup's CPU time
 * (cpu.stat), the whole machine's (/proc/stat), a process's peak resident
 * memory (VmHWM), and the packets iptables redirected.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** usage_usec of a cgroup v2 directory (user + system of every process that was in it). */
export function cgroupCpuUsec(cgroup: string): number {
  const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(cgroup, 'cpu.stat'), 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** USER_HZ, the unit of /proc/stat: 100 on every Linux architecture that matters here. */
const TICKS_PER_SECOND = 100;

export interface MachineCpu {
  /** Busy seconds summed over CPUs: user, nice, system, irq, softirq, steal. */
  busy: number;
  /** All seconds summed over CPUs, idle and iowait included. */
  total: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy: busy / TICKS_PER_SECOND, total: (busy + idle + iowait) / TICKS_PER_SECOND };
}

/** A process's peak resident set (VmHWM) in MiB, or null once it is gone. */
export function peakRssMb(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

/**
 * Connections REDIRECTed by the kernmesh chain in a namespace (the nat table
 * sees each connection's first packet only). The chain's name is the one
 * IptablesDatapath installs (src/datapath/iptables.ts).
 */
export function iptablesRedirects(netnsPath: string): number {
  const out = execFileSync('nsenter', [`--net=${netnsPath}`, 'iptables', '-t', 'nat', '-L', 'KERNMESH_OUTPUT', '-n', '-v', '-x'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  let n = 0;
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[2] === 'REDIRECT') n += Number(f[0]);
  }
  return n;
}

/** Whether something listens on a TCP port inside a namespace. */
export function listening(netnsPath: string, port: number): boolean {
  const out = execFileSync('nsenter', [`--net=${netnsPath}`, 'ss', '-Hltn', `sport = :${port}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.trim() !== '';
}

/** Polls listening() until it holds; throws after timeoutMs. */
export async function waitListening(netnsPath: string, port: number, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!listening(netnsPath, port)) {
    if (Date.now() > until) throw new Error(`${what} is not listening on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
