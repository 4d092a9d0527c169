// SPDX-License-Identifier: Apache-2.0
/** `kernmesh check`: the pre-flight before installing on a node (host features, and Redis). */
import type { Command } from 'commander';
import { describeRedis } from '../config/redis.ts';
import { type FeatureCheck, probeFeatures } from '../datapath/index.ts';
import { addRedisFlags, type RedisFlags, redisConfig, withStore } from './mesh-client.ts';
import { mark } from './output.ts';

export function registerCheck(program: Command): void {
  addRedisFlags(
    program
      .command('check')
      .description('check that this host can run the kernmesh datapath, and that Redis answers')
      .option('--json', 'print JSON')
      .option('--no-redis-check', 'skip the Redis check'),
  ).action(async (opts: RedisFlags & { json?: boolean; redisCheck: boolean }) => {
    const checks: FeatureCheck[] = probeFeatures();
    if (opts.redisCheck) {
      const cfg = redisConfig(opts);
      try {
        const version = await withStore(opts, (store) => store.version());
        checks.push({ name: 'redis', ok: true, detail: `${describeRedis(cfg)} (mesh version ${version})` });
      } catch (err) {
        checks.push({ name: 'redis', ok: false, detail: (err as Error).message, fix: 'start Redis or point REDIS_URL (--redis) at it' });
      }
    }
    const ok = checks.every((c) => c.ok);
    if (opts.json) console.log(JSON.stringify({ ok, checks }));
    else for (const c of checks) console.log(`${mark(c.ok)} ${c.name.padEnd(13)} ${c.detail}${c.fix ? `\n    → ${c.fix}` : ''}`);
    if (!ok) process.exitCode = 1;
  });
}
