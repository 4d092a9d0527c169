// SPDX-License-Identifier: Apache-2.0
/**
 * One proxy worker process: its own event loop, its own routing table (built
 * from the objects the primary sends), its own sockets on ports shared with
 * the other workers through SO_REUSEPORT, or listening sockets the primary
 * opened in pods' network namespaces and sent over IPC, so the kernel
 * spreads connections over every core.
 */
import type { Server, Socket } from 'node:net';
import type { StoredObject } from '../config/store.ts';
import { dialInNetns, nativeAddon, socketFd } from '../datapath/index.ts';
import { loggerTo } from '../log.ts';
import { ProxyCore } from './core.ts';
import { buildTable } from './routing/table.ts';
import { ProxyServer } from './server.ts';
import { IDLE_TIMEOUT_MS } from './http1/idle.ts';
import { AccessLog } from './telemetry/access-log.ts';
import { ForwardedLog } from './worker-log.ts';
import type { TokenAskMessage, WorkerListen, WorkerMessage } from './workers.ts';
import { RateLimitLeases, type TokenAsk } from './policy/node-limits.ts';
import type { Grant } from './policy/rate-limit.ts';

const core = new ProxyCore();
const server = new ProxyServer(core);
/** The objects the table is built from, by the number the primary sends each under (TableDelta). */
const objects = new Map<number, StoredObject>();
/** This worker's log lines, written by the primary (see worker-log.ts). */
const forwarded = new ForwardedLog((m, done) => process.send!(m, undefined, {}, done), {
  onDropped: (lines) => workerLogger.warn({ droppedLines: lines }, 'log lines dropped: the agent wrote its output slower than this worker logged; check where its stdout goes'),
});
const workerLogger = loggerTo(forwarded).child({ worker: process.pid });
const accessLogger = workerLogger.child({ component: 'access' });

/** Asks for the node's rate-limit tokens waiting for the primary's answer, by id. */
const asks = new Map<number, (g: Grant) => void>();
let nextAsk = 1;
/** The primary answers at once unless its event loop is stuck; past this a request is not held back longer. */
const ASK_TIMEOUT_MS = 1000;

function askPrimary(ask: TokenAsk): Promise<Grant> {
  return new Promise((resolve, reject) => {
    const id = nextAsk++;
    const timer = setTimeout(() => {
      asks.delete(id);
      reject(new Error(`the agent did not answer a rate-limit ask within ${ASK_TIMEOUT_MS} ms`));
    }, ASK_TIMEOUT_MS);
    asks.set(id, (g) => {
      clearTimeout(timer);
      asks.delete(id);
      resolve(g);
    });
    const m: TokenAskMessage = { type: 'tokens', id, ...ask };
    // A send that fails (the agent gone: this worker exits on disconnect) fails the ask, never the process.
    process.send!(m, undefined, {}, (err) => err && asks.get(id) && (clearTimeout(timer), asks.delete(id), reject(err)));
  });
}

// The node's rate limits are the primary's: requests here are admitted from credit it grants.
const leases = new RateLimitLeases(askPrimary);
leases.onUnanswered = (err) => workerLogger.warn({ err: err.message }, 'rate limits admitted requests unasked for a second: the agent did not answer');
core.admitter = leases;

/** Listeners adopted from the primary, by the key it released them under. */
const adopted = new Map<string, Server[]>();

process.on('message', async (m: WorkerMessage, handle?: Server) => {
  // The lines of requests served so far go first: an answer never overtakes them.
  forwarded.flush();
  switch (m.type) {
    case 'tokens':
      asks.get(m.id!)?.(m);
      break;
    case 'settings':
      core.balancer.zone = m.zone;
      // As the primary does: an access log once sampling is above 0, kept (at the new rate) after.
      if (m.accessLogSampling > 0) core.accessLog ??= new AccessLog(accessLogger, m.accessLogSampling);
      if (core.accessLog) core.accessLog.sampling = m.accessLogSampling;
      // Sent before any listener is adopted, so every connection a worker takes has it.
      server.idleTimeoutMs = m.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
      process.send!({ type: 'settings-applied', id: m.id });
      break;
    case 'adopt': {
      if (!handle) {
        process.send!({ type: 'adopted', id: m.id, error: 'no listening socket came with the message' });
        break;
      }
      const inbound = m.inbound;
      const options = {
        ...(m.source ? { source: m.source } : {}),
        ...(m.originalDst ? { originalDst: (s: Socket) => nativeAddon().originalDst(socketFd(s)) } : {}),
        // An inbound listener: the application is reached from inside the pod's namespace.
        ...(inbound ? { inbound: { workload: inbound.workload, dial: dialInNetns(inbound.netnsPath) } } : {}),
      };
      const mine = await server.listen({ handle }, options);
      // `mine` now owns the socket (the received server is only its envelope): closing it closes the copy here.
      adopted.set(m.key, [...(adopted.get(m.key) ?? []), mine]);
      process.send!({ type: 'adopted', id: m.id });
      break;
    }
    case 'release':
      for (const s of adopted.get(m.key) ?? []) s.close();
      adopted.delete(m.key);
      process.send!({ type: 'released', id: m.id });
      break;
    case 'summary':
      process.send!({ type: 'summary', id: m.id, counts: core.metrics.summaryCounts() });
      break;
    case 'table':
      // The primary sends what changed (TableDelta); unchanged objects stay the same here, and so does what buildTable compiled from them.
      if (m.reset) objects.clear();
      for (const id of m.deletes) objects.delete(id);
      for (const [id, o] of m.puts) objects.set(id, o);
      core.setTable(buildTable(m.version, objects.values(), core.table));
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
      core.metrics.upstreamPoolIdle.set(Object.values(core.pool.sizes()).reduce((a, b) => a + b, 0));
      process.send!({ type: 'metrics', id: m.id, text: await core.metrics.render() });
      break;
  }
});
process.on('SIGTERM', () => void server.close().then(() => forwarded.flush(() => process.exit(0))));
// The primary is gone (killed): a worker never outlives it, holding pods' listeners open.
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready' });
