// SPDX-License-Identifier: Apache-2.0
/**
 * Our proxy as the bench runs it: one process (one event loop, like HAProxy
 * with nbthread 1), started by the bench inside the proxy cgroup and the node
 * namespace, listening on 127.0.0.1:15001 inside the client pod's namespace
 * (listenInNetns, as the agent does) and asking each accepted connection's
 * original destination from the datapath, whichever mode answers it.
 *
 * argv: one JSON object {clientNetns, port, protocols}. Prints "ready" once
 * listening; on SIGTERM prints {"connections": N} and exits.
 */
import { nativeAddon, socketFd } from '../datapath/index.ts';
import { ProxyCore } from '../proxy/core.ts';
import { buildTable } from '../proxy/routing/table.ts';
import { ProxyServer } from '../proxy/server.ts';
import { type ProxyProtocols, benchObjects } from './mesh.ts';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { clientNetns: string; port: number; protocols: ProxyProtocols };
const addon = nativeAddon();
const core = new ProxyCore();
core.setTable(buildTable(1, benchObjects(cfg.protocols)));
const server = new ProxyServer(core);
await server.listen({ fd: addon.listenInNetns(cfg.clientNetns, '127.0.0.1', cfg.port) }, { originalDst: (s) => addon.originalDst(socketFd(s)) });
console.log('ready');
process.on('SIGTERM', () => {
  console.log(JSON.stringify({ connections: server.connectionsTotal }));
  void server.close().then(() => process.exit(0));
});
