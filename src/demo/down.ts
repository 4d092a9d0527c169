// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh demo down`: ends the demo's processes (by the pids it wrote
 * down), removes its pins, namespaces, cgroups and files. Works after a crash
 * too: whatever the state file names, and the demo's fixed names.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Root, cleanupPins, defaultLockPath, ensureBpffs } from '../datapath/index.ts';
import { withLockIfFree } from '../datapath/lock.ts';
import { readState } from './state.ts';

/** Whether pid is one of the demo's: its cgroup is under the demo's (a reused pid is someone else's). */
function ours(pid: number, cgroupRoot: string): boolean {
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    return !!line && join(cgroup2Root(), line.slice(3)).startsWith(cgroupRoot);
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stop(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
}

/** Removes the demo; returns what could not be removed (empty when clean). */
export async function down(dir: string, say: (line: string) => void = () => {}): Promise<string[]> {
  const state = readState(dir);
  const problems: string[] = [];
  const cg = state?.cgroupRoot ?? join(cgroup2Root(), 'kmdemo');
  // The agent first (it holds the datapath), then the rest. Redis runs outside the demo's
  // cgroups; the others are checked to still be in them, so a reused pid is never hit.
  for (const name of ['agent', 'controller', 'backends', 'redis']) {
    const pid = state?.pids[name];
    if (pid && (name === 'redis' || ours(pid, cg))) {
      await stop(pid);
      say(`stopped      ${name} (pid ${pid})`);
    }
  }
  // Anything else still in the demo's cgroups (a traffic run that was interrupted) is the demo's too.
  if (existsSync(cg)) {
    for (const e of readdirSync(cg, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      for (const pid of readFileSync(join(cg, e.name, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)) await stop(pid);
    }
  }
  const pins = state?.pinDir ?? join(ensureBpffs(), 'kernmesh-demo');
  if (existsSync(pins)) {
    cleanupPins(pins);
    say(`removed      pins ${pins}`);
  }
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith('kmdemo-')) : [];
  for (const ns of netns) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
      say(`removed      netns ${ns}`);
    } catch (err) {
      problems.push(`netns ${ns}: ${(err as Error).message}`);
    }
  }
  if (existsSync(cg)) {
    try {
      for (const e of readdirSync(cg, { withFileTypes: true })) if (e.isDirectory()) rmdirSync(join(cg, e.name));
      rmdirSync(cg);
      say(`removed      cgroup ${cg}`);
    } catch (err) {
      problems.push(`cgroup ${cg}: ${(err as Error).message}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  // The agent's lock file, left by an agent that did not remove it: removed only when free.
  const lock = defaultLockPath(pins);
  if (existsSync(lock)) withLockIfFree(lock, () => {});
  return problems;
}
