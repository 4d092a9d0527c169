// SPDX-License-Identifier: Apache-2.0
/**
 * The Redis layout. Every key is "<prefix>:{<mesh>}:<name>": the braces are
 * a Redis Cluster hash tag, so one mesh's keys share a slot (the Lua scripts
 * touch several at once) and several meshes can share one Redis.
 */
export interface Keys {
  /** INCR counter: the mesh version. */
  version: string;
  /** HASH "<Kind>/<key>" -> {"version":N,"object":{...}}. */
  objects: string;
  /** STREAM of {version, kind, key, op, obj}: the change log agents follow. */
  stream: string;
  /** HASH node -> the agent's last report (JSON). */
  agents: string;
  /** Per-node TTL key: present while the agent is alive. */
  alive(node: string): string;
  /** The controller leader's identity, with a TTL its holder keeps renewing. */
  controllerLeader: string;
}

export function meshKeys(prefix = 'kernmesh', mesh = 'mesh'): Keys {
  if (/[{}]/.test(mesh) || /[{}]/.test(prefix)) throw new Error('the mesh name and key prefix cannot contain braces');
  const p = `${prefix}:{${mesh}}:`;
  return {
    version: `${p}version`,
    objects: `${p}objects`,
    stream: `${p}stream`,
    agents: `${p}agents`,
    alive: (node) => `${p}alive:${node}`,
    controllerLeader: `${p}controller-leader`,
  };
}

/** The field of an object in the objects hash (and its key in the stream). */
export function field(kind: string, key: string): string {
  return `${kind}/${key}`;
}

export function parseField(f: string): { kind: string; key: string } {
  const i = f.indexOf('/');
  return { kind: f.slice(0, i), key: f.slice(i + 1) };
}
