// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { isNodeAddress, isPodAddress, parseDesired } from '../../src/datapath/desired.ts';
import { KmError } from '../../src/errors.ts';

const ok = { name: 'ns/a', netnsPath: '/run/netns/a', cgroupPath: '/sys/fs/cgroup/x' };

test('defaults fill in what was not said', (t) => {
  const d = parseDesired({ workloads: [ok] });
  t.is(d.failMode, 'open');
  t.deepEqual(d.excludedPorts, []);
  t.is(d.workloads[0]!.captureBy, 'netns');
  t.deepEqual(d.workloads[0]!.addresses, []);
  t.deepEqual(d.localAddresses, []);
  t.deepEqual(d.nodeAddresses, []);
});

test('node addresses: any unicast address, link-local too (a route may choose one as the source)', (t) => {
  for (const a of ['10.0.0.1', '169.254.7.127', 'fe80::1', '2001:db8::1']) t.true(isNodeAddress(a), a);
  for (const a of ['127.0.0.1', '0.0.0.0', '::1', '::', 'ff02::1', '224.0.0.1', '::ffff:10.0.0.1', 'node-a']) t.false(isNodeAddress(a), a);
});

test('pod addresses: unicast IPv4 and IPv6 only', (t) => {
  for (const a of ['10.201.0.6', '192.168.1.2', 'fd00:203::2', '2001:db8::1']) t.true(isPodAddress(a), a);
  for (const a of ['127.0.0.1', '0.0.0.0', '169.254.1.1', '224.0.0.1', '::1', '::', 'fe80::1', 'ff02::1', '::ffff:10.0.0.1', 'x', '10.0.0.0/8']) t.false(isPodAddress(a), a);
});

const bad: Array<[string, unknown, RegExp]> = [
  ['a port out of range', { workloads: [{ ...ok, excludedPorts: [70000] }] }, /workloads\.0\.excludedPorts\.0/],
  ['a CIDR that is not one', { excludedCidrs: ['10.0.0.0/40'] }, /excludedCidrs\.0: must be a CIDR/],
  ['a relative cgroup path', { workloads: [{ ...ok, cgroupPath: 'x' }] }, /workloads\.0\.cgroupPath/],
  ['an unknown fail mode', { failMode: 'maybe' }, /failMode/],
  ['the same workload twice', { workloads: [ok, ok] }, /listed twice/],
  ['netns capture without a netns', { workloads: [{ name: 'x', cgroupPath: '/a' }] }, /has no netnsPath/],
  ['a loopback pod address', { workloads: [{ ...ok, addresses: ['127.0.0.1'] }] }, /workloads\.0\.addresses\.0: must be a unicast pod address/],
  ['a link-local local address', { localAddresses: ['fe80::1'] }, /localAddresses\.0/],
  ['a v4-mapped local address', { localAddresses: ['::ffff:10.0.0.1'] }, /localAddresses\.0/],
  ['a prefix as a local address', { localAddresses: ['10.0.0.0/8'] }, /localAddresses\.0/],
  ['a loopback node address', { nodeAddresses: ['10.0.0.1', '127.0.0.1'] }, /nodeAddresses\.1: must be a unicast address of this node/],
  ['more node addresses than the map holds', { nodeAddresses: Array.from({ length: 1025 }, (_, i) => `10.1.${i >> 8}.${(i & 255) + 1}`) }, /nodeAddresses: at most 1024 node addresses/],
];
for (const [what, input, message] of bad) {
  test(`rejects ${what} with a message naming where`, (t) => {
    const err = t.throws(() => parseDesired(input as never), { instanceOf: KmError });
    t.is((err as KmError).code, 'KM_ERR_INVALID_SPEC');
    t.regex(err!.message, message);
  });
}
