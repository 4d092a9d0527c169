// SPDX-License-Identifier: Apache-2.0
/**
 * Keeping the mesh objects a source owns equal to what it wants: objects
 * carry a kernmesh.io/owner label; each sync writes what changed and deletes
 * what went, in one atomic batch, and leaves everyone else's objects alone.
 * What was last written is remembered so that a burst of changes costs a
 * diff in memory, not a read of the whole mesh; a new leader (or a failed
 * write) starts again from what Redis holds.
 */
import { type MeshObject, refOf, refString } from '../config/objects.ts';
import { type MeshStore, type WriteOp, storedJson } from '../config/store.ts';

export const OWNER_LABEL = 'kernmesh.io/owner';

export class OwnedSync {
  private readonly store: MeshStore;
  readonly owner: string;
  /** ref string -> stored body, as last read or written; undefined: read it from Redis first. */
  private have: Map<string, { object: MeshObject; json: string }> | undefined;

  constructor(store: MeshStore, owner: string) {
    this.store = store;
    this.owner = owner;
  }

  /** Forget what was written: the next sync reads Redis first (after leadership changes hands). */
  reset(): void {
    this.have = undefined;
  }

  /**
   * Writes the difference between want and what the owner has in the mesh.
   * `stillAllowed` is asked right before the write: a controller that lost
   * its lease meanwhile writes nothing. Returns the number of operations.
   */
  async sync(want: MeshObject[], stillAllowed: () => boolean | Promise<boolean>): Promise<number> {
    try {
      if (!this.have) {
        const stored = (await this.store.list()).filter((o) => o.object.metadata.labels?.[OWNER_LABEL] === this.owner);
        this.have = new Map(stored.map((o) => [refString(refOf(o.object)), { object: o.object, json: storedJson(o.object) }]));
      }
      const labelled = want.map((o) => ({ ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, [OWNER_LABEL]: this.owner } } }));
      const ops: WriteOp[] = [];
      const next = new Map<string, { object: MeshObject; json: string }>();
      for (const o of labelled) {
        const ref = refString(refOf(o));
        const json = storedJson(o);
        next.set(ref, { object: o, json });
        if (this.have.get(ref)?.json !== json) ops.push({ op: 'put', object: o });
      }
      for (const [ref, cur] of this.have) if (!next.has(ref)) ops.push({ op: 'delete', ref: refOf(cur.object) });
      if (ops.length === 0) return 0;
      if (!(await stillAllowed())) return 0;
      await this.store.write(ops);
      this.have = next;
      return ops.length;
    } catch (err) {
      this.have = undefined;
      throw err;
    }
  }
}
