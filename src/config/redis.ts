// SPDX-License-Identifier: Apache-2.0
/**
 * Connecting to the mesh's Redis: URL or unix socket, password, TLS, or
 * Sentinel, from flags or the environment. Commands fail fast instead of
 * queueing while Redis is away: callers own their retries (the agent keeps
 * serving its last good config meanwhile).
 */
import { Redis, type RedisOptions } from 'ioredis';
import { KmError } from '../errors.ts';

export interface RedisConfig {
  /** redis://host:port/db, rediss:// (TLS), or unix:///path/to.sock?db=N (or a bare /path); see parseRedisUrl. */
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

/** What a Redis URL may look like, for messages and --help. */
export const REDIS_URL_FORMS = 'redis://[[user]:password@]host[:port][/db], rediss://... (the same over TLS), unix:///path/to/redis.sock[?db=N] or /path/to/redis.sock[?db=N]';

/** Where a URL points: TCP (the URL itself, which ioredis reads) or a unix socket, and the database number. */
export type RedisTarget = { kind: 'tcp'; url: string; tls: boolean; db: number } | { kind: 'unix'; path: string; db: number };

/** The largest database index Redis takes (its `databases` setting is an int). */
const MAX_DB = 2_147_483_647;

/**
 * Reads a Redis URL, or says what is wrong with it and what is accepted.
 * Stricter than ioredis, which takes any other scheme's path for a unix
 * socket (http://host:6379 became "connect ENOENT //host:6379") and
 * anything after the host for a database number.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const shown = url.replace(/\/\/[^@/]*@/, '//***@');
  const bad = (why: string) => new KmError('KM_ERR_INVALID_CONFIG', `Redis URL "${shown}": ${why}; use ${REDIS_URL_FORMS}`);
  const dbNumber = (text: string, where: string): number => {
    if (!/^\d+$/.test(text) || Number(text) > MAX_DB) throw bad(`${where} must be a database number (0, 1, ...), not "${text}"`);
    return Number(text);
  };
  if (url.startsWith('/')) {
    const q = url.indexOf('?');
    return { kind: 'unix', path: q === -1 ? url : url.slice(0, q), db: unixDb(q === -1 ? '' : url.slice(q + 1), bad, dbNumber) };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad('not a URL');
  }
  switch (u.protocol) {
    case 'unix:': {
      // unix:///path: the host part is empty (unix://run/redis.sock would make "run" a host).
      if (u.host !== '' || !u.pathname.startsWith('/')) throw bad('a unix socket URL is unix:// followed by an absolute path (three slashes)');
      return { kind: 'unix', path: decodeURIComponent(u.pathname), db: unixDb(u.search.slice(1), bad, dbNumber) };
    }
    case 'redis:':
    case 'rediss:': {
      if (!u.hostname) throw bad('no host');
      if (u.searchParams.has('db')) throw bad('give the database as the path (redis://host:port/3), not as ?db=');
      const path = u.pathname.replace(/^\//, '');
      return { kind: 'tcp', url, tls: u.protocol === 'rediss:', db: path === '' ? 0 : dbNumber(path, 'the path') };
    }
    default:
      throw bad(`unsupported scheme "${u.protocol.replace(/:$/, '')}"`);
  }
}

function unixDb(query: string, bad: (why: string) => KmError, dbNumber: (text: string, where: string) => number): number {
  const params = new URLSearchParams(query);
  for (const key of params.keys()) if (key !== 'db') throw bad(`unknown parameter "${key}" (a unix socket URL takes only ?db=N)`);
  const db = params.get('db');
  return db === null ? 0 : dbNumber(db, '?db=');
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

/** Throws KM_ERR_INVALID_CONFIG for a URL parseRedisUrl refuses, before any connection is tried. */
export function connectRedis(cfg: RedisConfig, name: string, extra: RedisOptions = {}): Redis {
  const target = cfg.sentinels?.length ? undefined : parseRedisUrl(cfg.url ?? DEFAULT_REDIS_URL);
  const client = newClient(cfg, target, name, extra);
  // A refused database ends the connection attempt: the errors that follow (the handshake's commands on a
  // dropped socket) are its consequences, and would hide the reason.
  let refused = false;
  client.on('connect', () => (refused = false));
  client.on('error', (err: Error & { command?: { name?: string } }) => {
    if (refused) return;
    if (err.command?.name === 'select') {
      // ioredis carries on in database 0 when SELECT is refused (an index past the server's `databases`): no
      // command may run there. Dropping the socket before the handshake ends fails this connection, and the
      // retry strategy tries again (and fails again, saying why) as it would with Redis away.
      refused = true;
      lastErrors.set(client, new Error(`Redis refused database ${target?.db}: ${err.message} (it has fewer: see its \`databases\` setting)`, { cause: err }));
      client.stream?.destroy();
      return;
    }
    lastErrors.set(client, err);
  });
  return client;
}

function newClient(cfg: RedisConfig, target: RedisTarget | undefined, name: string, extra: RedisOptions): Redis {
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
  if (!target) return new Redis({ ...base, sentinels: cfg.sentinels!, name: cfg.sentinelName ?? 'mymaster' });
  // The database is selected on every (re)connect, so each connection (the store's, an agent's stream) is in it.
  if (target.kind === 'unix') return new Redis({ ...base, path: target.path, db: target.db });
  return new Redis(target.url, { ...base, db: target.db, ...(target.tls ? { tls: { ...(cfg.tls ?? {}) } } : {}) });
}
