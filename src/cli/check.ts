// SPDX-License-Identifier: Apache-2.0
/** `kernmesh check`: the pre-flight before installing on a node (host features, and Redis). */
import type { Command } from 'commander';
import { describeRedis } from '../config/redis.ts';
import { type FeatureCheck, probeFeatures } from '../datapath/index.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
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
    // The host's problems come first in the exit code (6): they are what this command is for.
    let exitCode: number = checks.every((c) => c.ok) ? EXIT.OK : EXIT.HOST;
    if (opts.redisCheck) {
      const cfg = redisConfig(opts);
      try {
        const version = await withStore(opts, (store) => store.version());
        checks.push({ name: 'redis', ok: true, detail: `${describeRedis(cfg)} (mesh version ${version})` });
      } catch (err) {
        // 5 when Redis is away; 3 when the URL itself is wrong.
        const code = exitCodeFor(err);
        if (exitCode === EXIT.OK) exitCode = code;
        checks.push({ name: 'redis', ok: false, detail: (err as Error).message, fix: code === EXIT.INVALID ? 'correct the URL in --redis or REDIS_URL' : 'start Redis or point REDIS_URL (--redis) at it' });
      }
    }
    const ok = checks.every((c) => c.ok);
    if (opts.json) console.log(JSON.stringify({ ok, checks }));
    else for (const c of checks) console.log(`${mark(c.ok)} ${c.name.padEnd(13)} ${c.detail}${c.fix ? `\n    → ${c.fix}` : ''}`);
    process.exitCode = exitCode;
  });
}
