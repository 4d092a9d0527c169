// SPDX-License-Identifier: Apache-2.0
/**
 * The kernmesh proxy as the benchmark runs it: one process, one event loop,
 * a listener bound to a service whose one endpoint is the backend.
 * argv: <listen port> <backend port>; prints "ready" when listening.
 */
import { ProxyServer } from '../../src/proxy/server.ts';
import { BENCH_SERVICE, benchCore } from './bench-core.ts';

const [listenPort, backendPort] = process.argv.slice(2).map(Number);
const server = new ProxyServer(benchCore(backendPort!));
await server.listen({ port: listenPort!, host: '127.0.0.1' }, { service: BENCH_SERVICE });
console.log('ready');
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
