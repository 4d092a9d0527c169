// SPDX-License-Identifier: Apache-2.0
/**
 * Connecting to the mesh's Redis: URL or unix socket, password, TLS, or
 * Sentinel, from flags or the environment. Commands fail fast instead of
 * queueing while Redis is away: callers own their retries (the agent keeps
 * serving its last good config meanwhile).
 */
import { Redis, type RedisOptions } from 'ioredis';

export interface RedisConfig {
  /** redis://, rediss:// (TLS), or unix:///path/to.sock (or a bare /path). */
  url?: string;
  password?: string;
  /** Extra TLS options for rediss:// (ca, cert, key as PEM text). */
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  /** Sentinel: "host:port,host:port" plus the master's name. */
  sentinels?: Array<{ host: string; port: number }>;
  sentinelName?: string;
  /** Key prefix; every key also carries the mesh name as a hash tag. */
  prefix?: string;
  mesh?: string;
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export function redisConfigFromEnv(env: NodeJS.ProcessEnv = process.env): RedisConfig {
  const cfg: RedisConfig = { url: env.REDIS_URL ?? DEFAULT_REDIS_URL };
  if (env.REDIS_PASSWORD) cfg.password = env.REDIS_PASSWORD;
  if (env.REDIS_SENTINELS) {
    cfg.sentinels = env.REDIS_SENTINELS.split(',').map((hp) => {
      const [host = '', port = '26379'] = hp.trim().split(':');
      return { host, port: Number(port) };
    });
    cfg.sentinelName = env.REDIS_SENTINEL_NAME ?? 'mymaster';
  }
  if (env.KERNMESH_REDIS_PREFIX) cfg.prefix = env.KERNMESH_REDIS_PREFIX;
  if (env.KERNMESH_MESH) cfg.mesh = env.KERNMESH_MESH;
  return cfg;
}

/** Where a config points, for messages (never the password). */
export function describeRedis(cfg: RedisConfig): string {
  if (cfg.sentinels?.length) return `sentinel ${cfg.sentinelName} via ${cfg.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  return (cfg.url ?? DEFAULT_REDIS_URL).replace(/\/\/[^@/]*@/, '//***@');
}

const lastErrors = new WeakMap<Redis, Error>();

/**
 * Connects, or throws with the reason Redis gave: ioredis reports a refused
 * password or certificate as an 'error' event and then only says
 * "Connection is closed", which tells a person nothing.
 */
export async function connectExplained(client: Redis): Promise<void> {
  try {
    await client.connect();
  } catch (err) {
    const why = lastErrors.get(client);
    throw why && why.message !== (err as Error).message ? new Error(`${why.message}`, { cause: err }) : err;
  }
}

export function connectRedis(cfg: RedisConfig, name: string, extra: RedisOptions = {}): Redis {
  const client = newClient(cfg, name, extra);
  client.on('error', (err: Error) => lastErrors.set(client, err));
  return client;
}

function newClient(cfg: RedisConfig, name: string, extra: RedisOptions): Redis {
  const base: RedisOptions = {
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    // Reconnect forever, backing off to 2 s: the agent must catch up whenever Redis returns.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    ...(cfg.password ? { password: cfg.password } : {}),
    ...extra,
  };
  if (cfg.sentinels?.length) {
    return new Redis({ ...base, sentinels: cfg.sentinels, name: cfg.sentinelName ?? 'mymaster' });
  }
  const url = cfg.url ?? DEFAULT_REDIS_URL;
  if (url.startsWith('unix:') || url.startsWith('/')) {
    return new Redis({ ...base, path: url.replace(/^unix:\/\//, '') });
  }
  const tls = url.startsWith('rediss:') ? { tls: { ...(cfg.tls ?? {}) } } : {};
  return new Redis(url, { ...base, ...tls });
}
