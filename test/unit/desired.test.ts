// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { parseDesired } from '../../src/datapath/desired.ts';
import { KmError } from '../../src/errors.ts';

const ok = { name: 'ns/a', netnsPath: '/run/netns/a', cgroupPath: '/sys/fs/cgroup/x' };

test('defaults fill in what was not said', (t) => {
  const d = parseDesired({ workloads: [ok] });
  t.is(d.failMode, 'open');
  t.deepEqual(d.excludedPorts, []);
  t.is(d.workloads[0]!.captureBy, 'netns');
});

const bad: Array<[string, unknown, RegExp]> = [
  ['a port out of range', { workloads: [{ ...ok, excludedPorts: [70000] }] }, /workloads\.0\.excludedPorts\.0/],
  ['a CIDR that is not one', { excludedCidrs: ['10.0.0.0/40'] }, /excludedCidrs\.0: must be a CIDR/],
  ['a relative cgroup path', { workloads: [{ ...ok, cgroupPath: 'x' }] }, /workloads\.0\.cgroupPath/],
  ['an unknown fail mode', { failMode: 'maybe' }, /failMode/],
  ['the same workload twice', { workloads: [ok, ok] }, /listed twice/],
  ['netns capture without a netns', { workloads: [{ name: 'x', cgroupPath: '/a' }] }, /has no netnsPath/],
];
for (const [what, input, message] of bad) {
  test(`rejects ${what} with a message naming where`, (t) => {
    const err = t.throws(() => parseDesired(input as never), { instanceOf: KmError });
    t.is((err as KmError).code, 'KM_ERR_INVALID_SPEC');
    t.regex(err!.message, message);
  });
}
