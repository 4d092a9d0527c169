// SPDX-License-Identifier: Apache-2.0
/**
 * Writing a plan to the maps, all or nothing: on the first failure every
 * write already made is undone, in reverse, from the contents read before
 * planning (not from lookups: an LPM trie lookup answers the longest
 * matching prefix, not the exact key).
 */
import { KmError, errnoCode } from '../errors.ts';
import type { MapContents, MapOp, PlannedMap } from './planner.ts';

/** The three map operations a plan needs; the eBPF datapath passes the addon's. */
export interface MapWriter {
  update(map: PlannedMap, key: Buffer, value: Buffer): void;
  delete(map: PlannedMap, key: Buffer): void;
}

export function applyOps(writer: MapWriter, ops: MapOp[], before: MapContents): void {
  const done: MapOp[] = [];
  try {
    for (const op of ops) {
      if (op.action === 'upsert') writer.update(op.map, op.key, op.value!);
      else writer.delete(op.map, op.key);
      done.push(op);
    }
  } catch (err) {
    const failedUndo: string[] = [];
    for (const op of done.reverse()) {
      const prev = before[op.map].get(op.key.toString('hex'));
      try {
        if (prev) writer.update(op.map, op.key, prev);
        else writer.delete(op.map, op.key);
      } catch (undoErr) {
        failedUndo.push(`${op.map}: ${(undoErr as Error).message}`);
      }
    }
    const code = errnoCode(err);
    const full = code === 'E2BIG' || code === 'ENOSPC';
    const undo = failedUndo.length ? `; undoing also failed (${failedUndo.join('; ')})` : '; every earlier write was undone';
    throw new KmError(full ? 'KM_ERR_MAP_FULL' : 'KM_ERR_MAP_UPDATE', `applying the datapath state failed at ${done.length + 1} of ${ops.length} writes: ${(err as Error).message}${undo}`, { cause: err });
  }
}
