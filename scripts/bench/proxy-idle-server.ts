// SPDX-License-Identifier: Apache-2.0
/** The proxy process of bench:proxy-idle: reports its port, then its memory on request. */
import type { AddressInfo } from 'node:net';
import { ProxyServer } from '../../src/proxy/server.ts';
import { BENCH_SERVICE, benchCore } from './bench-core.ts';

const server = new ProxyServer(benchCore(Number(process.argv[2])));
const s = await server.listen({ port: 0, host: '127.0.0.1' }, { service: BENCH_SERVICE });
process.send!({ port: (s.address() as AddressInfo).port });
process.on('message', () => {
  globalThis.gc?.();
  const m = process.memoryUsage();
  process.send!({ rss: m.rss, heap: m.heapUsed });
});
process.on('SIGTERM', () => process.exit(0));
