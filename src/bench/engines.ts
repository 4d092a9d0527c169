// SPDX-License-Identifier: Apache-2.0
/**
 * The processes of one run: the server pod's (HAProxy answering fixed
 * responses, iperf3 for bulk) and the engine in the middle (our proxy or
 * HAProxy), each in its cgroup and namespace, each stopped by pid.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageScript } from '../paths.ts';
import type { Lab } from './lab.ts';
import { peakRssMb, waitListening } from './measure.ts';
import type { Mode } from './modes.ts';
import { type ServiceKind, engineConfig, serverConfig } from './haproxy.ts';
import type { Proc } from './procs.ts';
import { PORTS, type Testbed } from './testbed.ts';

export interface Running {
  procs: Proc[];
  stop(): Promise<void>;
}

/**
 * The server pod: HAProxy on the HTTP and gRPC ports, plus an iperf3 server
 * for bulk runs, in the mode's server cgroup (under the attach point in eBPF runs).
 */
export async function startServer(lab: Lab, bed: Testbed, mode: Mode, kind: ServiceKind): Promise<Running> {
  const cfg = join(lab.dir, 'server.cfg');
  writeFileSync(cfg, serverConfig());
  const ns = bed.path('server');
  const cgroup = lab.cgroups(mode.interception).server;
  const procs = [lab.procs.start('server haproxy', cgroup, ns, 'haproxy', ['-f', cfg, '-db'])];
  if (kind === 'bulk') procs.push(lab.procs.start('iperf3 server', cgroup, ns, 'iperf3', ['-s', '-p', String(PORTS.bulk)]));
  const running = { procs, stop: () => Promise.all(procs.map((p) => lab.procs.stop(p))).then(() => {}) };
  try {
    await waitListening(ns, PORTS.http, 'the server pod');
    await waitListening(ns, PORTS.grpc, 'the server pod');
    if (kind === 'bulk') await waitListening(ns, PORTS.bulk, 'the iperf3 server');
  } catch (err) {
    await running.stop();
    throw err;
  }
  return running;
}

export interface EngineHandle extends Running {
  pid: number;
  /** Connections our proxy accepted (read when it stops); null for HAProxy. */
  connections: number | null;
  peakRssMb(): number | null;
}

/** The engine of a mesh mode, in the node namespace, listening inside the client's. */
export async function startEngine(lab: Lab, bed: Testbed, mode: Mode, kind: ServiceKind): Promise<EngineHandle> {
  const cgroup = lab.cgroups(mode.interception).proxy;
  const node = bed.path('node');
  let proc: Proc;
  if (mode.engine === 'haproxy') {
    const cfg = join(lab.dir, 'engine.cfg');
    writeFileSync(cfg, engineConfig(kind, bed.names.client));
    proc = lab.procs.start('haproxy engine', cgroup, node, 'haproxy', ['-f', cfg, '-db']);
  } else {
    const arg = JSON.stringify({ clientNetns: bed.path('client'), port: PORTS.proxy, protocols: mode.engine === 'kernmesh-tcp' ? 'tcp' : 'l7' });
    proc = lab.procs.start('kernmesh proxy', cgroup, node, process.execPath, [packageScript('bench/proxy-main'), arg]);
  }
  const handle: EngineHandle = {
    procs: [proc],
    pid: proc.pid,
    connections: null,
    peakRssMb: () => peakRssMb(proc.pid),
    stop: async () => {
      await lab.procs.stop(proc);
      const m = /\{"connections":(\d+)\}/.exec(proc.stdout);
      if (m) handle.connections = Number(m[1]);
    },
  };
  try {
    if (mode.engine === 'haproxy') await waitListening(bed.path('client'), PORTS.proxy, 'HAProxy');
    else await proc.waitFor(/^ready$/m, 15_000);
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return handle;
}
