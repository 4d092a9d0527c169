// SPDX-License-Identifier: Apache-2.0
/**
 * One proxy worker process: its own event loop, its own routing table (built
 * from the objects the primary sends), its own sockets on ports shared with
 * the other workers through SO_REUSEPORT, so the kernel spreads connections
 * over every core.
 */
import type { StoredObject } from '../config/store.ts';
import { ProxyCore } from './core.ts';
import { buildTable } from './routing/table.ts';
import { ProxyServer } from './server.ts';
import type { WorkerListen, WorkerMessage } from './workers.ts';

const core = new ProxyCore();
const server = new ProxyServer(core);

process.on('message', async (m: WorkerMessage) => {
  switch (m.type) {
    case 'table':
      core.setTable(buildTable(m.version, m.objects as StoredObject[], core.table));
      process.send!({ type: 'table-applied', version: m.version, id: m.id });
      break;
    case 'listen':
      await Promise.all(m.listens.map((l: WorkerListen) => server.listen({ port: l.port, host: l.host, reusePort: true }, l.service ? { service: l.service } : {})));
      process.send!({ type: 'listening', id: m.id });
      break;
    case 'stats':
      process.send!({ type: 'stats', id: m.id, pid: process.pid, connectionsTotal: server.connectionsTotal, active: server.activeConnections, version: core.table.version });
      break;
    case 'metrics':
      process.send!({ type: 'metrics', id: m.id, text: await core.metrics.render() });
      break;
  }
});
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
process.send!({ type: 'ready' });
