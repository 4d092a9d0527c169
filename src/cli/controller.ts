// SPDX-License-Identifier: Apache-2.0
/** `kernmesh controller --registry FILE`: the controller in local-registry mode, until SIGTERM or SIGINT. */
import type { Command } from 'commander';
import { hostname } from 'node:os';
import { connectRedis } from '../config/redis.ts';
import { MeshStore } from '../config/store.ts';
import { LocalController } from '../controller/local.ts';
import { addRedisFlags, type RedisFlags, redisConfig } from './mesh-client.ts';

export function registerController(program: Command): void {
  addRedisFlags(
    program
      .command('controller')
      .description('write services and endpoints to the mesh from a local registry file (one active replica, leader-elected)')
      .requiredOption('--registry <file>', 'YAML: services with addresses, ports and endpoints')
      .option('--id <name>', 'this replica\'s identity', `${hostname()}-${process.pid}`),
  ).action(async (opts: RedisFlags & { registry: string; id: string }) => {
    const cfg = redisConfig(opts);
    // Commands may queue while Redis is away: the leader lease lapses meanwhile, so nothing stale is written.
    const redis = connectRedis(cfg, `kernmesh-controller-${opts.id}`, { enableOfflineQueue: true, lazyConnect: false });
    redis.on('error', () => {});
    const controller = new LocalController(new MeshStore(redis, { ...(cfg.prefix ? { prefix: cfg.prefix } : {}), ...(cfg.mesh ? { mesh: cfg.mesh } : {}) }), opts.registry, opts.id);
    try {
      controller.start();
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    await new Promise<void>((resolve) => {
      const stop = () => void controller.stop().then(() => (redis.disconnect(), resolve()));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  });
}
