// SPDX-License-Identifier: Apache-2.0
/**
 * Finding a pod on this node: its cgroup v2 directory from its UID in the
 * kubepods tree, and its network namespace from a process in that cgroup.
 * Both kubelet cgroup drivers name the pod's directory after its UID:
 *   systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice
 *   cgroupfs: kubepods/burstable/pod<uid>
 * (Guaranteed pods sit directly under kubepods.) The kubepods directory is
 * also where the datapath attaches, so every pod is under it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const KUBEPODS = new Set(['kubepods.slice', 'kubepods', 'kubelet-kubepods.slice']);

/** The kubepods cgroup under a cgroup2 mount (searched a few levels down: kind and nested setups put it deeper). */
export function findKubepods(cgroupRoot: string, depth = 3): string | undefined {
  let level = [cgroupRoot];
  for (let d = 0; d <= depth && level.length; d++) {
    const next: string[] = [];
    for (const dir of level) {
      for (const name of subdirs(dir)) {
        const path = join(dir, name);
        if (KUBEPODS.has(name)) return path;
        next.push(path);
      }
    }
    level = next;
  }
  return undefined;
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/** The pod's cgroup directory, or undefined while it does not exist (yet). */
export function findPodCgroup(kubepods: string, uid: string): string | undefined {
  const names = [`pod${uid}`, `pod${uid.replaceAll('-', '_')}`];
  const isPod = (name: string) => names.some((n) => name === n || name.endsWith(`-${n}.slice`));
  // The pod sits at depth 1 (Guaranteed) or 2 (Burstable, BestEffort).
  for (const a of subdirs(kubepods)) {
    if (isPod(a)) return join(kubepods, a);
    for (const b of subdirs(join(kubepods, a))) if (isPod(b)) return join(kubepods, a, b);
  }
  return undefined;
}

/** Every pid in a cgroup and its children (the pod's containers are child cgroups). */
export function cgroupPids(dir: string): number[] {
  const pids: number[] = [];
  const walk = (d: string) => {
    try {
      for (const line of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.push(Number(line));
    } catch {
      /* gone meanwhile */
    }
    for (const s of subdirs(d)) walk(join(d, s));
  };
  walk(dir);
  return pids;
}

/**
 * A path to the pod's network namespace: /proc/<pid>/ns/net of a process in
 * its cgroup, read through procRoot (the host's /proc mounted into the agent,
 * so the agent does not need hostPID). Every container of a pod shares it;
 * the oldest process (the sandbox's pause, as a rule) is chosen because it
 * lives as long as the pod, where an app container may restart.
 *
 * The pids come from the pod's cgroup.procs; from inside another pid
 * namespace those read as 0, and then from `byUid` (a scan of
 * procRoot/<pid>/cgroup, see podPidsFromProc) instead.
 */
export function findPodNetns(podCgroup: string, procRoot = '/proc', uid?: string, byUid?: () => Map<string, number[]>): { path?: string; problem?: string } {
  const host = inode(join(procRoot, '1', 'ns', 'net'));
  let pids = cgroupPids(podCgroup).filter((p) => p > 0);
  if (pids.length === 0 && uid && byUid) pids = byUid().get(uid) ?? [];
  for (const pid of byAge(pids, procRoot)) {
    const path = join(procRoot, String(pid), 'ns', 'net');
    const ino = inode(path);
    if (ino === undefined) continue; // the process ended: try the next
    // Never the node's own namespace: capturing it would steer the host's traffic.
    if (ino === host) return { problem: `its processes are in the node's network namespace (${path})` };
    return { path };
  }
  return { problem: `no process in ${podCgroup} yet (containers starting?)` };
}

/** Oldest first, by start time (field 22 of /proc/<pid>/stat); unreadable ones last. */
function byAge(pids: number[], procRoot: string): number[] {
  const start = (pid: number): number => {
    try {
      const stat = readFileSync(join(procRoot, String(pid), 'stat'), 'utf8');
      // The command name may hold spaces and parentheses: count fields after the last ')'.
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    } catch {
      return Number.MAX_SAFE_INTEGER;
    }
  };
  return pids.map((p) => [p, start(p)] as const).sort((a, b) => a[1] - b[1] || a[0] - b[0]).map(([p]) => p);
}

const POD_IN_CGROUP = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/;

/**
 * Pod uid -> pids, from every process's /proc/<pid>/cgroup (the path names
 * the pod under either cgroup driver). One pass over /proc serves every pod.
 */
export function podPidsFromProc(procRoot = '/proc'): Map<string, number[]> {
  const out = new Map<string, number[]>();
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(join(procRoot, name, 'cgroup'), 'utf8');
    } catch {
      continue;
    }
    const m = POD_IN_CGROUP.exec(text);
    if (!m) continue;
    const uid = m[1]!.replaceAll('_', '-');
    const list = out.get(uid) ?? [];
    list.push(Number(name));
    out.set(uid, list);
  }
  return out;
}

function inode(path: string): bigint | undefined {
  try {
    return statSync(path, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}

/**
 * The agent's own cgroup in the node's hierarchy. /proc/self/cgroup cannot
 * tell inside a container with its own cgroup namespace (it reads "0::/"),
 * but the node's cgroup.procs files list pids as this process's pid
 * namespace sees them, so the directory that lists our pid is ours.
 */
export function findOwnCgroup(kubepods: string, pid = process.pid, depth = 4): string | undefined {
  const me = String(pid);
  const walk = (dir: string, d: number): string | undefined => {
    try {
      if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').includes(me)) return dir;
    } catch {
      /* gone meanwhile */
    }
    if (d === 0) return undefined;
    for (const s of subdirs(dir)) {
      const found = walk(join(dir, s), d - 1);
      if (found) return found;
    }
    return undefined;
  };
  return walk(kubepods, depth);
}
