// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh datapath selftest`: can this kernel do it? Builds a scratch
 * cgroup and netns, attaches the real programs there, sends real
 * connections through connect4, connect6, sockops, sk_msg and getsockopt,
 * reports one line per hook, and removes everything again. The inbound
 * hook (sk_lookup) is not exercised here: test/kernel/inbound.test.ts does.
 */
import { type Server, type Socket, createServer } from 'node:net';
import { packageScript } from '../../paths.ts';
import { type Counters } from '../codec.ts';
import { EbpfDatapath } from '../ebpf.ts';
import { programsStillLoaded } from '../pins.ts';
import { type FeatureCheck, probeFeatures } from '../host.ts';
import { addon } from '../native.ts';
import { Scratch, sweepStaleScratch } from '../scratch.ts';
import { serveEcho, socketFd } from './echo.ts';

export interface HookResult {
  hook: 'connect4' | 'connect6' | 'sockops' | 'sk_msg' | 'getsockopt';
  ok: boolean;
  detail: string;
  counters: Partial<Record<keyof Counters, string>>;
}

export interface SelftestReport {
  ok: boolean;
  features: FeatureCheck[];
  hooks: HookResult[];
  cleanup: { ok: boolean; problems: string[] };
  error?: string;
}

export const VIP4 = '10.96.0.10';
export const VIP6 = 'fd00:96::10';
const OUTBOUND_PORT = 15001;

/** The probe client's entry point, next to this file whether run from src/ or dist/. */
export function clientScript(): string {
  return packageScript('datapath/selftest/client');
}

interface ClientLine {
  ok: boolean;
  role?: string;
  info?: { address?: string; port?: number; family?: string; error?: string };
  error?: string;
  code?: string;
}

export async function runClient(scratch: Scratch, cgroup: string, args: object): Promise<ClientLine[]> {
  const r = await scratch.run(cgroup, process.execPath, [clientScript(), JSON.stringify(args)]);
  const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as ClientLine);
  if (lines.length === 0) return [{ ok: false, error: `client printed nothing (exit ${r.code}): ${r.stderr.trim()}` }];
  return lines;
}

const openSockets = new WeakMap<Server, Set<Socket>>();

export function listen(netnsPath: string, host: string, port: number, role: string, describe: Parameters<typeof serveEcho>[2]): Promise<Server> {
  const fd = addon().listenInNetns(netnsPath, host, port);
  const server = createServer();
  const sockets = new Set<Socket>();
  openSockets.set(server, sockets);
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  serveEcho(server, role, describe);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => resolve(server));
  });
}

/** Stops listening and ends every connection still open (close() alone waits for them). */
export function closeServer(server: Server): Promise<void> {
  for (const s of openSockets.get(server) ?? []) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** originalDst() of an accepted socket, as the proxy would ask. */
export const describeOriginalDst = (socket: Socket) => addon().originalDst(socketFd(socket));

function pick(c: Counters, ...names: Array<keyof Counters>) {
  return Object.fromEntries(names.map((n) => [n, c[n].toString()]));
}

export async function selftest(): Promise<SelftestReport> {
  const features = probeFeatures();
  const report: SelftestReport = { ok: false, features, hooks: [], cleanup: { ok: true, problems: [] } };
  const missing = features.filter((f) => !f.ok);
  if (missing.length) {
    // Named here too: the JSON report and a reader of the last line see what is missing without the feature lines.
    report.error = `the host lacks what the datapath needs, so nothing was tried: ${missing.map((f) => `${f.name} (${f.detail})`).join(', ')}`;
    return report;
  }

  sweepStaleScratch();
  const scratch = new Scratch('selftest');
  const servers: Server[] = [];
  let dp: EbpfDatapath | undefined;
  let programIds: number[] = [];
  try {
    scratch.setup();
    scratch.addVip(VIP4);
    scratch.addVip(VIP6);
    const proxyCg = scratch.cgroup('proxy');
    const appCg = scratch.cgroup('app');
    dp = await EbpfDatapath.open({
      pinDir: scratch.pinDir,
      attachCgroup: scratch.cgroupRoot,
      lockPath: scratch.lockPath,
      proxyCgroup: proxyCg,
      outboundPort: OUTBOUND_PORT,
    });
    programIds = Object.values(dp.programIds());
    await dp.apply({ workloads: [{ name: 'selftest/app', netnsPath: scratch.netnsPath, cgroupPath: appCg }] });

    // The proxy's sockets must belong to a cgroup under the attach point for
    // cgroup/getsockopt to see them: this process plays the proxy from there.
    scratch.enter('proxy');
    servers.push(await listen(scratch.netnsPath, '127.0.0.1', OUTBOUND_PORT, 'PROXY', describeOriginalDst));
    servers.push(await listen(scratch.netnsPath, '::1', OUTBOUND_PORT, 'PROXY', describeOriginalDst));
    dp.heartbeat(); // the proxy is listening: connects may now be redirected to it

    const v4 = await runClient(scratch, 'app', { host: VIP4, port: 80, sizes: [65536] });
    const v6 = await runClient(scratch, 'app', { host: VIP6, port: 80, sizes: [65536] });
    const c = dp.counters();
    const reached = (l: ClientLine[] | undefined, addr: string) =>
      !!l?.[0]?.ok && l[0].role === 'PROXY' && l[0].info?.address === addr && l[0].info?.port === 80;
    const describe = (l: ClientLine[]) => {
      const x = l[0];
      if (!x) return 'no answer';
      if (!x.ok) return `client failed: ${x.error}`;
      return `${x.role} answered, original destination ${x.info?.address ?? x.info?.error}:${x.info?.port ?? ''}`;
    };
    const both = reached(v4, VIP4) && reached(v6, VIP6);
    report.hooks = [
      { hook: 'connect4', ok: reached(v4, VIP4) && c.connect4_redirected > 0n, detail: describe(v4), counters: pick(c, 'connect4_redirected') },
      { hook: 'connect6', ok: reached(v6, VIP6) && c.connect6_redirected > 0n, detail: describe(v6), counters: pick(c, 'connect6_redirected') },
      {
        hook: 'sockops',
        ok: both && c.sockops_active >= 2n && c.sockops_passive >= 2n,
        detail: 'both ends of each redirected connection entered the sockhash',
        counters: pick(c, 'sockops_active', 'sockops_passive', 'sockhash_failed'),
      },
      {
        hook: 'sk_msg',
        ok: both && c.msg_redirected > 0n && c.bytes_redirected >= 2n * 65536n,
        detail: '64 KiB each way spliced socket to socket and echoed intact',
        counters: pick(c, 'msg_redirected', 'bytes_redirected', 'msg_miss'),
      },
      {
        hook: 'getsockopt',
        ok: both && c.getsockopt_answered >= 2n,
        detail: 'SO_ORIGINAL_DST answered for IPv4 and IPv6',
        counters: pick(c, 'getsockopt_answered', 'getsockopt_miss'),
      },
    ];
  } catch (err) {
    report.error = (err as Error).message;
  } finally {
    const problems: string[] = [];
    try {
      await Promise.all(servers.map(closeServer));
      if (dp) await dp.close({ detach: true });
    } catch (err) {
      problems.push(`closing the datapath: ${(err as Error).message}`);
    } finally {
      problems.push(...(await scratch.cleanup()));
    }
    const left = await programsStillLoaded(programIds);
    if (left.length) problems.push(`programs still loaded: ids ${left.join(', ')}`);
    report.cleanup = { ok: problems.length === 0, problems };
  }
  report.ok = !report.error && report.hooks.length === 5 && report.hooks.every((h) => h.ok) && report.cleanup.ok;
  return report;
}
