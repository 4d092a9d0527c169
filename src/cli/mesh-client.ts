// SPDX-License-Identifier: Apache-2.0
/** The Redis connection the config commands share: --redis, or REDIS_URL and friends. */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { type RedisConfig, connectExplained, connectRedis, describeRedis, redisConfigFromEnv } from '../config/redis.ts';
import { MeshStore, redisError } from '../config/store.ts';
import { DEFAULT_DEMO_DIR, readState } from '../demo/state.ts';

export interface RedisFlags {
  redis?: string;
  mesh?: string;
}

export function addRedisFlags(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'Redis URL (redis://, rediss://, unix:///path); default $REDIS_URL, else the local demo\'s, else redis://127.0.0.1:6379')
    .option('--mesh <name>', 'mesh name (several meshes can share one Redis); default $KERNMESH_MESH or "mesh"');
}

export function redisConfig(flags: RedisFlags): RedisConfig {
  const cfg = redisConfigFromEnv();
  // Nothing said where Redis is: the local demo's embedded one, when a demo is up.
  if (!flags.redis && !process.env.REDIS_URL && !process.env.REDIS_SENTINELS) {
    try {
      const demo = readState(DEFAULT_DEMO_DIR);
      if (demo && existsSync(demo.redisSocket)) cfg.url = `unix://${demo.redisSocket}`;
    } catch {
      /* a damaged demo state file: fall back to the default URL */
    }
  }
  if (flags.redis) cfg.url = flags.redis;
  if (flags.mesh) cfg.mesh = flags.mesh;
  return cfg;
}

/** Runs fn with a connected store, and always disconnects. */
export async function withStore<T>(flags: RedisFlags, fn: (store: MeshStore) => Promise<T>): Promise<T> {
  const cfg = redisConfig(flags);
  const redis = connectRedis(cfg, 'kernmesh-cli', { retryStrategy: () => null });
  redis.on('error', () => {}); // surfaced by the command that fails
  try {
    try {
      await connectExplained(redis);
    } catch (err) {
      throw redisError(err, `cannot reach Redis at ${describeRedis(cfg)}`);
    }
    return await fn(new MeshStore(redis, { ...(cfg.prefix ? { prefix: cfg.prefix } : {}), ...(cfg.mesh ? { mesh: cfg.mesh } : {}) }));
  } finally {
    redis.disconnect();
  }
}
