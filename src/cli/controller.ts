// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh controller`: writes services and endpoints to the mesh, one
 * active replica at a time, until SIGTERM or SIGINT. From Kubernetes
 * (`--kubernetes`: Services, EndpointSlices, a coordination.k8s.io Lease) or
 * from a local registry file (`--registry`: leadership through Redis).
 */
import type { Command } from 'commander';
import { type Server, createServer } from 'node:http';
import { hostname } from 'node:os';
import { connectRedis } from '../config/redis.ts';
import { MeshStore } from '../config/store.ts';
import { KubeController } from '../controller/kube.ts';
import { LocalController } from '../controller/local.ts';
import { loadKubeConfig } from '../kube/client.ts';
import { childLogger } from '../log.ts';
import { EXIT } from './exit-codes.ts';
import { addRedisFlags, type RedisFlags, redisConfig } from './mesh-client.ts';

type Flags = RedisFlags & { registry?: string; kubernetes?: boolean; kubeconfig?: string; leaseNamespace: string; leaseName: string; id: string; healthPort?: string };

export function registerController(program: Command): void {
  addRedisFlags(
    program
      .command('controller')
      .description('write services and endpoints to the mesh (one active replica, leader-elected): from Kubernetes or a local registry file')
      .option('--kubernetes', 'watch Services and EndpointSlices; lead through a coordination.k8s.io Lease')
      .option('--kubeconfig <file>', 'default: in-cluster, else KUBECONFIG or ~/.kube/config')
      .option('--lease-namespace <ns>', 'where the Lease lives', process.env.POD_NAMESPACE ?? 'kernmesh-system')
      .option('--lease-name <name>', 'the Lease', 'kernmesh-controller')
      .option('--registry <file>', 'local mode: YAML with services, addresses, ports and endpoints')
      .option('--id <name>', "this replica's identity", process.env.POD_NAME ?? `${hostname()}-${process.pid}`)
      .option('--health-port <port>', '/healthz and /readyz on this port (every address)'),
  ).action(async (opts: Flags, cmd: Command) => {
    // A choice the command line has to make: a usage error (exit 2), said as Commander says its own.
    if (!!opts.kubernetes === !!opts.registry) cmd.error('error: say where services come from: --kubernetes, or --registry FILE (one of them)', { exitCode: EXIT.USAGE, code: 'kernmesh.usage' });
    const cfg = redisConfig(opts);
    // Local mode: commands may queue while Redis is away (the leader claim lives in the same Redis, in order, so a
    // queued write follows a claim that lapsed). Kubernetes mode: the lease lives elsewhere, so a write must reach
    // Redis promptly or not at all: no offline queue, no resend after a reconnect, a command timeout.
    const redis = connectRedis(
      cfg,
      `kernmesh-controller-${opts.id}`,
      opts.kubernetes ? { enableOfflineQueue: false, lazyConnect: false, maxRetriesPerRequest: 0, commandTimeout: 3000 } : { enableOfflineQueue: true, lazyConnect: false },
    );
    redis.on('error', () => {});
    const store = new MeshStore(redis, { ...(cfg.prefix ? { prefix: cfg.prefix } : {}), ...(cfg.mesh ? { mesh: cfg.mesh } : {}) });
    let controller: { stop(): Promise<void>; health(): { ready: boolean; detail: Record<string, unknown> } };
    try {
      if (opts.kubernetes) {
        const kc = loadKubeConfig(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {});
        const k = new KubeController({ kc, store, identity: opts.id, leaseNamespace: opts.leaseNamespace, leaseName: opts.leaseName, log: childLogger('controller', { id: opts.id }) });
        k.start();
        controller = {
          stop: () => k.stop(),
          health: () => ({ ready: k.synced, detail: { leading: k.leader.isLeading(), synced: k.synced, syncs: k.syncs, writes: k.writes, lastError: k.lastError ?? k.leader.lastError ?? null } }),
        };
      } else {
        const l = new LocalController(store, opts.registry!, opts.id);
        l.start();
        controller = { stop: () => l.stop(), health: () => ({ ready: true, detail: { leading: l.leader.leading, syncs: l.syncs, lastError: l.lastError ?? null } }) };
      }
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    const health = opts.healthPort ? await serveHealth(Number(opts.healthPort), controller.health) : undefined;
    await new Promise<void>((resolve) => {
      const stop = () =>
        void controller.stop().then(() => {
          health?.close();
          redis.disconnect();
          resolve();
        });
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  });
}

/** Liveness: the process answers. Readiness: its informers have listed (a standby replica is ready too). */
function serveHealth(port: number, health: () => { ready: boolean; detail: Record<string, unknown> }): Promise<Server> {
  const server = createServer((req, res) => {
    const h = health();
    const path = req.url?.split('?')[0];
    const status = path === '/healthz' ? 200 : path === '/readyz' ? (h.ready ? 200 : 503) : 404;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(status === 404 ? { error: 'try /healthz or /readyz' } : h.detail)}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}
