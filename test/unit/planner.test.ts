// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { encodeAddrKey, encodeCaptureKey, encodePortKey, encodeWorkload, parseCidr } from '../../src/datapath/codec.ts';
import { type MapContents, type ResolvedWorkload, emptyContents, formatPlan, planMaps } from '../../src/datapath/planner.ts';

const noGlobals = { excludedPorts: [], excludedCidrs: [] };
const wl = (name: string, id: bigint, extra: Partial<ResolvedWorkload> = {}): ResolvedWorkload => ({
  name,
  key: { kind: 'netns', id },
  excludedPorts: [],
  excludedCidrs: [],
  ...extra,
});

/** What the maps hold after applying a plan to them. */
function applied(current: MapContents, plan: ReturnType<typeof planMaps>): MapContents {
  const next = emptyContents();
  for (const m of Object.keys(current) as Array<keyof MapContents>) for (const [k, v] of current[m]) next[m].set(k, v);
  for (const op of plan.ops) {
    if (op.action === 'upsert') next[op.map].set(op.key.toString('hex'), op.value!);
    else next[op.map].delete(op.key.toString('hex'));
  }
  return next;
}

test('a new workload gets its exclusions written before its capture entry', (t) => {
  const plan = planMaps(emptyContents(), [wl('ns/a', 11n, { excludedPorts: [9999], excludedCidrs: [parseCidr('10.97.0.0/16')] })], noGlobals, { prune: true });
  t.deepEqual(
    plan.ops.map((o) => `${o.action} ${o.map}`),
    ['upsert km_xport_v1', 'upsert km_xcidr4_v1', 'upsert km_capture_v1'],
  );
  t.is(plan.ids.get('ns/a'), 1);
});

test('applying the same state twice plans nothing', (t) => {
  const desired = [wl('ns/a', 11n, { excludedPorts: [22] }), wl('ns/b', 12n)];
  const first = planMaps(emptyContents(), desired, { excludedPorts: [15020], excludedCidrs: [] }, { prune: true });
  const second = planMaps(applied(emptyContents(), first), desired, { excludedPorts: [15020], excludedCidrs: [] }, { prune: true });
  t.deepEqual(second.ops, []);
});

test('a workload keeps its id across plans; new ones never reuse a taken id', (t) => {
  const current = emptyContents();
  current.km_capture_v1.set(encodeCaptureKey({ kind: 'netns', id: 12n }).toString('hex'), encodeWorkload(1));
  current.km_capture_v1.set(encodeCaptureKey({ kind: 'netns', id: 13n }).toString('hex'), encodeWorkload(3));
  const plan = planMaps(current, [wl('ns/new', 99n), wl('ns/old', 12n), wl('ns/new2', 98n)], noGlobals, { prune: false });
  t.is(plan.ids.get('ns/old'), 1);
  t.is(plan.ids.get('ns/new'), 2);
  t.is(plan.ids.get('ns/new2'), 4);
});

test('released workloads lose their capture entry before their exclusions', (t) => {
  const start = applied(emptyContents(), planMaps(emptyContents(), [wl('ns/a', 11n, { excludedPorts: [22] })], noGlobals, { prune: true }));
  const plan = planMaps(start, [], noGlobals, { prune: true });
  t.deepEqual(
    plan.ops.map((o) => `${o.action} ${o.map}`),
    ['delete km_capture_v1', 'delete km_xport_v1'],
  );
  t.deepEqual(applied(start, plan), emptyContents());
});

test('without prune nothing is deleted (before the first full sync)', (t) => {
  const start = applied(emptyContents(), planMaps(emptyContents(), [wl('ns/a', 11n)], noGlobals, { prune: true }));
  const plan = planMaps(start, [wl('ns/b', 12n)], noGlobals, { prune: false });
  t.true(plan.ops.every((o) => o.action === 'upsert'));
  t.is(plan.sizes.km_capture_v1, 2);
});

test('global exclusions are keyed by workload id 0', (t) => {
  const plan = planMaps(emptyContents(), [], { excludedPorts: [15020], excludedCidrs: [parseCidr('fd00::/8')] }, { prune: true });
  t.true(plan.ops.some((o) => o.map === 'km_xport_v1' && o.key.equals(encodePortKey(0, 15020))));
  t.true(plan.ops.some((o) => o.map === 'km_xcidr6_v1' && o.key.readUInt32BE(4) === 0));
});

test('the plan reads as a person would want it', (t) => {
  const lines = formatPlan(planMaps(emptyContents(), [wl('shop/cart-1', 77n, { excludedPorts: [22] })], noGlobals, { prune: true }));
  t.deepEqual(lines, ['+ km_xport_v1: shop/cart-1 excludes port 22', '+ km_capture_v1: capture shop/cart-1 (netns 77) as #1']);
});

test('sizes count what the maps will hold', (t) => {
  const plan = planMaps(emptyContents(), [wl('a', 1n, { excludedPorts: [1, 2] }), wl('b', 2n)], { excludedPorts: [3], excludedCidrs: [] }, { prune: true });
  t.is(plan.sizes.km_capture_v1, 2);
  t.is(plan.sizes.km_xport_v1, 3);
});

test('pod addresses, of workloads and listed apart, become km_local_v1 entries; stale ones go first', (t) => {
  const first = planMaps(emptyContents(), [wl('ns/a', 11n, { addresses: ['10.0.0.5', 'fd00::5'] })], { ...noGlobals, localAddresses: ['10.0.0.9', '10.0.0.5'] }, { prune: true });
  t.deepEqual(
    first.ops.filter((o) => o.map === 'km_local_v1').map((o) => o.key),
    [encodeAddrKey('10.0.0.9'), encodeAddrKey('10.0.0.5'), encodeAddrKey('fd00::5')],
    'one entry per address, however often it is named',
  );
  t.is(first.sizes.km_local_v1, 3);
  t.true(formatPlan(first).includes('+ km_local_v1: splice to ns/a at fd00::5'));
  const start = applied(emptyContents(), first);
  const next = planMaps(start, [wl('ns/a', 11n, { addresses: ['10.0.0.5'] }), wl('ns/b', 12n, { addresses: ['10.0.0.6'] })], noGlobals, { prune: true });
  const local = next.ops.filter((o) => o.map === 'km_local_v1');
  t.deepEqual(local.map((o) => o.action), ['delete', 'delete', 'upsert']);
  t.is(next.ops.indexOf(local[0]!), 0, 'stale local addresses go before anything is added');
  t.true(formatPlan(next).includes('- km_local_v1: stop splicing to 10.0.0.9 (no longer a local pod)'));
  t.is(next.peak.km_local_v1, 2);
  t.deepEqual(planMaps(applied(start, next), [wl('ns/a', 11n, { addresses: ['10.0.0.5'] }), wl('ns/b', 12n, { addresses: ['10.0.0.6'] })], noGlobals, { prune: true }).ops, []);
});

test('node addresses become km_nodeaddr_v1 entries; one no longer the node\'s is removed', (t) => {
  const first = planMaps(emptyContents(), [], { ...noGlobals, nodeAddresses: ['10.0.0.1', 'fe80::1'] }, { prune: true });
  t.deepEqual(
    first.ops.map((o) => [o.map, o.action, o.key]),
    [
      ['km_nodeaddr_v1', 'upsert', encodeAddrKey('10.0.0.1')],
      ['km_nodeaddr_v1', 'upsert', encodeAddrKey('fe80::1')],
    ],
  );
  t.true(formatPlan(first).includes('+ km_nodeaddr_v1: node address 10.0.0.1: its connections reach pods directly'));
  const next = planMaps(applied(emptyContents(), first), [], { ...noGlobals, nodeAddresses: ['10.0.0.1'] }, { prune: true });
  t.deepEqual(formatPlan(next), ["- km_nodeaddr_v1: forget node address fe80::1 (no longer the node's)"]);
  t.is(next.sizes.km_nodeaddr_v1, 1);
});
