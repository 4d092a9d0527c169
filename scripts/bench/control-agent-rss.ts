// SPDX-License-Identifier: Apache-2.0
/**
 * One real agent process, for its memory: eager (holds the whole mesh) or
 * lazy (holds what its node uses). Prints {"rss_mb", "heap_mb", "objects"} when synced.
 * argv[2]: {"url", "mesh", "lazy", "warm", "services"}
 */
import { AgentSync } from '../../src/config/sync.ts';

const args = JSON.parse(process.argv[2]!) as { url: string; mesh: string; lazy: boolean; warm: number; services: number };
const a = new AgentSync({ node: `rss-${args.lazy ? 'lazy' : 'eager'}`, redis: { url: args.url, mesh: args.mesh }, lazy: args.lazy });
await a.start();
if (args.lazy) for (let j = 0; j < args.warm; j++) await a.want('Service', `bench/svc-${(j * 97) % args.services}`);
globalThis.gc?.();
const mem = process.memoryUsage();
const mb = (b: number) => Math.round((b / 1048576) * 10) / 10;
console.log(JSON.stringify({ rss_mb: mb(mem.rss), heap_mb: mb(mem.heapUsed), objects: a.current().objects.size }));
await a.stop();
