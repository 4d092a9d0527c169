// SPDX-License-Identifier: Apache-2.0
// The all-or-nothing write of a plan. A kernel map cannot be made to fail on
// the Nth write on purpose, so the writer here is an in-memory one that does.
import test from 'ava';
import { applyOps } from '../../src/datapath/apply-ops.ts';
import { parseCidr } from '../../src/datapath/codec.ts';
import { type MapContents, emptyContents, planMaps } from '../../src/datapath/planner.ts';
import { KmError } from '../../src/errors.ts';

function memoryWriter(state: MapContents, failAt: number, code = 'E2BIG') {
  let n = 0;
  const maybeFail = () => {
    if (++n === failAt) throw Object.assign(new Error('bpf_map_update_elem: Argument list too long'), { code });
  };
  return {
    update: (m: keyof MapContents, k: Buffer, v: Buffer) => {
      maybeFail();
      state[m].set(k.toString('hex'), v);
    },
    delete: (m: keyof MapContents, k: Buffer) => {
      maybeFail();
      state[m].delete(k.toString('hex'));
    },
  };
}

const clone = (c: MapContents): MapContents => {
  const out = emptyContents();
  for (const m of Object.keys(c) as Array<keyof MapContents>) for (const [k, v] of c[m]) out[m].set(k, v);
  return out;
};

test('a failure part-way through undoes every earlier write, exactly', (t) => {
  // Start: workload a (with a /8 exclusion); then plan b in, a out, with a /16 inside the /8.
  const start = emptyContents();
  const first = planMaps(start, [{ name: 'a', key: { kind: 'netns', id: 1n }, excludedPorts: [22], excludedCidrs: [parseCidr('10.0.0.0/8')] }], { excludedPorts: [], excludedCidrs: [] }, { prune: true });
  applyOps(memoryWriter(start, 0), first.ops, emptyContents());
  const before = clone(start);
  const plan = planMaps(before, [{ name: 'b', key: { kind: 'netns', id: 2n }, excludedPorts: [23], excludedCidrs: [parseCidr('10.1.0.0/16')] }], { excludedPorts: [], excludedCidrs: [] }, { prune: true });
  t.true(plan.ops.length >= 5);
  for (let failAt = 1; failAt <= plan.ops.length; failAt++) {
    const state = clone(before);
    const err = t.throws(() => applyOps(memoryWriter(state, failAt), plan.ops, before), { instanceOf: KmError });
    t.is((err as KmError).code, 'KM_ERR_MAP_FULL');
    t.regex(err!.message, new RegExp(`failed at ${failAt} of ${plan.ops.length} writes.*every earlier write was undone`));
    t.deepEqual(state, before, `failing at write ${failAt} leaves the maps as they were`);
  }
});

test('other write errors are reported as map update failures', (t) => {
  const state = emptyContents();
  const plan = planMaps(state, [{ name: 'a', key: { kind: 'netns', id: 1n }, excludedPorts: [], excludedCidrs: [] }], { excludedPorts: [], excludedCidrs: [] }, { prune: true });
  const err = t.throws(() => applyOps(memoryWriter(state, 1, 'EINVAL'), plan.ops, emptyContents()));
  t.is((err as KmError).code, 'KM_ERR_MAP_UPDATE');
});
