// SPDX-License-Identifier: Apache-2.0
/**
 * Facts about this host that the datapath depends on, each found where the
 * kernel publishes it, and each missing one reported with what to do.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { KmError } from '../errors.ts';

const BPF_FS_MAGIC = 'bpf';

export interface Mount {
  source: string;
  target: string;
  fstype: string;
}

export function mounts(): Mount[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [source = '', target = '', fstype = ''] = line.split(' ');
      // /proc/mounts escapes spaces and friends as octal.
      return { source, target: target.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), fstype };
    });
}

/** The cgroup v2 mount point (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
export function cgroup2Root(): string {
  const m = mounts().find((x) => x.fstype === 'cgroup2');
  if (!m) {
    throw new KmError(
      'KM_ERR_NO_CGROUP2',
      'cgroup2 is not mounted (no cgroup2 line in /proc/mounts): boot with systemd.unified_cgroup_hierarchy=1 or mount -t cgroup2 none /sys/fs/cgroup',
    );
  }
  return m.target;
}

/** The cgroup v2 id of a cgroup directory: its inode number on cgroup2. */
export function cgroupId(path: string): bigint {
  try {
    return statSync(path, { bigint: true }).ino;
  } catch (err) {
    throw new KmError('KM_ERR_CGROUP_NOT_FOUND', `cgroup ${path} does not exist: create it or fix the path`, { cause: err });
  }
}

/** This process's cgroup v2 directory. */
export function ownCgroup(pid: number | 'self' = 'self'): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  if (!line) throw new KmError('KM_ERR_NO_CGROUP2', `process ${pid} has no cgroup v2 membership`);
  const rel = line.slice(3);
  return rel === '/' ? cgroup2Root() : cgroup2Root() + rel;
}

export function isBpffs(path: string): boolean {
  return mounts().some((m) => m.target === path && m.fstype === BPF_FS_MAGIC);
}

/** Mounts bpffs at /sys/fs/bpf when nothing is mounted there yet. */
export function ensureBpffs(root = '/sys/fs/bpf'): string {
  if (isBpffs(root)) return root;
  try {
    mkdirSync(root, { recursive: true });
    execFileSync('mount', ['-t', 'bpf', 'bpf', root], { stdio: 'pipe' });
  } catch (err) {
    throw new KmError('KM_ERR_BPFFS', `no bpf filesystem at ${root} and mounting one failed: run \`mount -t bpf bpf ${root}\` as root`, {
      cause: err,
    });
  }
  return root;
}

export interface Capabilities {
  effective: bigint;
  has(name: CapName): boolean;
}

const CAP_BITS = { CAP_NET_ADMIN: 12n, CAP_SYS_ADMIN: 21n, CAP_PERFMON: 38n, CAP_BPF: 39n } as const;
export type CapName = keyof typeof CAP_BITS;

export function capabilities(): Capabilities {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('CapEff:'));
  const effective = BigInt(`0x${(line ?? 'CapEff:0').split(':')[1]!.trim()}`);
  return { effective, has: (name) => ((effective >> CAP_BITS[name]) & 1n) === 1n };
}

export interface FeatureCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do when !ok. */
  fix?: string;
}

function kernelAtLeast(major: number, minor: number): boolean {
  const [a = 0, b = 0] = release().split('.').map((x) => parseInt(x, 10));
  return a > major || (a === major && b >= minor);
}

/** What `kernmesh datapath selftest` and `kernmesh check` report first. */
export function probeFeatures(): FeatureCheck[] {
  const checks: FeatureCheck[] = [];
  const kernelOk = kernelAtLeast(5, 15);
  checks.push({
    name: 'kernel',
    ok: kernelOk,
    detail: release(),
    ...(kernelOk ? {} : { fix: 'kernmesh needs Linux 5.15 or newer (netns cookies in sockops and sk_msg)' }),
  });
  const btf = existsSync('/sys/kernel/btf/vmlinux');
  checks.push({
    name: 'btf',
    ok: btf,
    detail: btf ? '/sys/kernel/btf/vmlinux' : 'missing',
    ...(btf ? {} : { fix: 'the kernel lacks BTF: use a kernel built with CONFIG_DEBUG_INFO_BTF=y' }),
  });
  let cg = '';
  try {
    cg = cgroup2Root();
  } catch {
    /* reported below */
  }
  checks.push({
    name: 'cgroup2',
    ok: cg !== '',
    detail: cg || 'not mounted',
    ...(cg ? {} : { fix: 'mount cgroup v2: mount -t cgroup2 none /sys/fs/cgroup' }),
  });
  const bpffs = mounts().find((m) => m.fstype === BPF_FS_MAGIC);
  checks.push({
    name: 'bpffs',
    ok: true,
    detail: bpffs ? bpffs.target : 'not mounted yet (the agent mounts /sys/fs/bpf)',
  });
  const caps = capabilities();
  const missing = (['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_SYS_ADMIN'] as const).filter((c) => !caps.has(c));
  checks.push({
    name: 'capabilities',
    ok: missing.length === 0,
    detail: missing.length ? `missing ${missing.join(', ')}` : 'CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN',
    ...(missing.length ? { fix: `run as root or grant ${missing.join(', ')}` } : {}),
  });
  return checks;
}
