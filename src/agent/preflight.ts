// SPDX-License-Identifier: Apache-2.0
/**
 * What the agent checks on the host before it touches anything (Redis, its
 * cache, the kernel): that the cgroups and the pin directory its
 * configuration names are there, and that no other agent owns the datapath.
 * The configuration itself is checked by parseAgentConfig; what is found
 * missing here is the host's (exit 6), and each message names the setting to
 * fix. EbpfDatapath.open checks the same again when it opens, as it must for
 * every other caller; here they are found before the agent has synced,
 * reported or written its cache.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { KmError } from '../errors.ts';
import { cgroup2Root, defaultLockPath, isUnder, mountTypeOf, mounts, nativeAddon, ownCgroup } from '../datapath/index.ts';
import { lockHeld } from '../datapath/lock.ts';
import { findKubepods, findOwnCgroup } from '../kube/discover.ts';
import type { AgentConfig } from './config.ts';

/** Where the eBPF datapath attaches, and the proxy's cgroup when it is not this process's own. */
export interface EbpfPlacement {
  attachCgroup: string;
  proxyCgroup?: string;
}

const isDir = (path: string) => {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
};

/**
 * Checks the host for this configuration and returns where the datapath will
 * attach (null: not ebpf mode). source names the configuration in messages
 * (the file the agent was started with).
 */
export function checkAgentHost(config: AgentConfig, source = 'the agent configuration'): EbpfPlacement | null {
  if (config.mode !== 'ebpf') return null;
  const root = cgroup2Root();
  const kube = config.kubernetes;
  let attachCgroup: string;
  if (config.attachCgroup) {
    attachCgroup = resolve(config.attachCgroup);
    if (!isDir(attachCgroup)) {
      throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `cgroup ${attachCgroup} does not exist on this host: create it, or set attachCgroup in ${source} to the cgroup whose processes are to be intercepted`);
    }
  } else if (kube.enabled && kube.kubepodsCgroup) {
    attachCgroup = resolve(kube.kubepodsCgroup);
    if (!isDir(attachCgroup)) throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `cgroup ${attachCgroup} does not exist on this host: fix kubernetes.kubepodsCgroup in ${source} (or leave it out to have kubepods found)`);
  } else {
    // parseAgentConfig lets ebpf mode leave attachCgroup out only with kubernetes.enabled.
    const under = kube.cgroupRoot ?? root;
    const found = findKubepods(under);
    if (!found) throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `no kubepods cgroup under ${under}: set kubernetes.kubepodsCgroup (or attachCgroup) in ${source}`);
    attachCgroup = found;
  }
  if (attachCgroup === root || !isUnder(attachCgroup, root)) {
    throw new KmError('KM_ERR_CGROUP_OUTSIDE_ROOT', `refusing to attach to ${attachCgroup}: attachCgroup must be a cgroup below the cgroup2 mount ${root}, never its root (fix it in ${source})`);
  }

  // In a container /proc/self/cgroup reads "0::/": on Kubernetes this process is found in the node's tree instead.
  const proxyCgroup = config.proxyCgroup ? resolve(config.proxyCgroup) : kube.enabled ? findOwnCgroup(attachCgroup) : undefined;
  if (config.proxyCgroup && !isDir(proxyCgroup!)) throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `cgroup ${proxyCgroup} does not exist on this host: fix proxyCgroup in ${source} (or leave it out: the agent's own cgroup)`);
  const proxy = proxyCgroup ?? ownCgroup();
  if (!isUnder(proxy, attachCgroup)) {
    throw new KmError(
      'KM_ERR_CGROUP_OUTSIDE_ROOT',
      `the proxy's cgroup ${proxy} is not under attachCgroup ${attachCgroup}: the datapath only sees sockets of processes below it; run the agent in a cgroup below it, or set attachCgroup in ${source} higher`,
    );
  }

  // Pins live on bpffs: an existing bpf mount above pinDir, or /sys/fs/bpf, which the datapath mounts when it is not.
  const pinDir = resolve(config.pinDir);
  if (mountTypeOf(pinDir) !== 'bpf' && !(isUnder(pinDir, '/sys/fs/bpf') && !mounts().some((m) => m.target === '/sys/fs/bpf'))) {
    throw new KmError('KM_ERR_BPFFS', `pinDir ${pinDir} is not on a bpf filesystem: pins must live under a bpffs mount such as /sys/fs/bpf (fix pinDir in ${source})`);
  }
  nativeAddon();
  const lock = defaultLockPath(pinDir);
  // Whether the lock can be taken at all is for EbpfDatapath.open to say (KM_ERR_LOCK): here only whether it is taken.
  let taken = false;
  try {
    taken = existsSync(lock) && lockHeld(lock);
  } catch {
    /* see above */
  }
  if (taken) throw new KmError('KM_ERR_AGENT_RUNNING', `another kernmesh agent owns ${pinDir} (lock ${lock} is held): stop it first, or give this one another pinDir`);
  return { attachCgroup, ...(proxyCgroup ? { proxyCgroup } : {}) };
}
