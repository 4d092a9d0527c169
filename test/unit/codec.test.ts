// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { readFileSync } from 'node:fs';
import {
  SIZES,
  STAT_NAMES,
  decodeAddrKey,
  decodeCaptureKey,
  decodeCidrKey,
  decodeOrigDst,
  decodeSettings,
  encodeAddrKey,
  encodeCaptureKey,
  encodeCidrKey,
  encodeInboundKey,
  encodePortKey,
  encodeSettings,
  encodeWorkload,
  formatCidr,
  formatIp,
  ipv6Bytes,
  parseCidr,
} from '../../src/datapath/codec.ts';

const header = readFileSync(new URL('../../bpf/kernmesh.h', import.meta.url), 'utf8');
const layout = readFileSync(new URL('../../native/src/layout_check.cc', import.meta.url), 'utf8');

test('codec sizes are the sizes the addon asserts for bpf/kernmesh.h', (t) => {
  const asserted = Object.fromEntries(
    [...layout.matchAll(/sizeof\(struct (km_\w+)\) == (\d+)/g)].map((m) => [m[1], Number(m[2])]),
  );
  t.deepEqual(asserted, {
    km_settings: SIZES.settings,
    km_capture_key: SIZES.captureKey,
    km_workload: SIZES.workload,
    km_port_key: SIZES.portKey,
    km_cidr4_key: SIZES.cidr4Key,
    km_cidr6_key: SIZES.cidr6Key,
    km_origdst: SIZES.origdst,
    km_sock_key: SIZES.sockKey,
    km_inbound_key: SIZES.inboundKey,
    km_addr_key: SIZES.addrKey,
  });
});

test('inbound keys: the address in network order, then the port and the family in host order', (t) => {
  const k = encodeInboundKey('10.201.0.2', 8080);
  t.is(k.length, SIZES.inboundKey);
  t.deepEqual([...k.subarray(0, 4)], [10, 201, 0, 2]);
  t.is(k.readUInt16LE(16), 8080);
  t.is(k.readUInt16LE(18), 2);
  t.is(encodeInboundKey('fd00::2', 80).readUInt16LE(18), 10);
});

test('local address keys: the address in network order, then the family in host order', (t) => {
  const k = encodeAddrKey('10.201.0.6');
  t.is(k.length, SIZES.addrKey);
  t.deepEqual([...k.subarray(0, 4)], [10, 201, 0, 6]);
  t.deepEqual([...k.subarray(4, 16)], Array(12).fill(0));
  t.is(k.readUInt32LE(16), 2);
  t.is(encodeAddrKey('fd00::6').readUInt32LE(16), 10);
  t.is(decodeAddrKey(encodeAddrKey('fd00::6')), 'fd00::6');
  t.is(decodeAddrKey(k), '10.201.0.6');
});

test('STAT_NAMES follow enum km_stat in order', (t) => {
  const body = /enum km_stat \{([^}]*)\}/.exec(header)?.[1] ?? '';
  const names = [...body.matchAll(/KM_STAT_(\w+)/g)].map((m) => m[1]!.toLowerCase()).filter((n) => n !== '_max');
  t.deepEqual(names, [...STAT_NAMES]);
});

test('encoders produce exactly the struct sizes', (t) => {
  t.is(encodeSettings(decodeSettings(Buffer.alloc(SIZES.settings))).length, SIZES.settings);
  t.is(encodeCaptureKey({ kind: 'netns', id: 5n }).length, SIZES.captureKey);
  t.is(encodeWorkload(3).length, SIZES.workload);
  t.is(encodePortKey(1, 80).length, SIZES.portKey);
  t.is(encodeCidrKey(1, parseCidr('10.0.0.0/8')).length, SIZES.cidr4Key);
  t.is(encodeCidrKey(1, parseCidr('fd00::/8')).length, SIZES.cidr6Key);
});

test('settings round-trip', (t) => {
  const s = {
    heartbeatNs: 123456789012345n,
    heartbeatTimeoutNs: 5_000_000_000n,
    proxyCgroupId: 4242n,
    proxyMark: 0x539,
    failMode: 'closed' as const,
    outboundPort: 15001,
    inboundPort: 15006,
    cgroupCaptures: 2,
  };
  t.deepEqual(decodeSettings(encodeSettings(s)), s);
});

test('capture keys round-trip and differ by kind', (t) => {
  const a = encodeCaptureKey({ kind: 'netns', id: 99n });
  const b = encodeCaptureKey({ kind: 'cgroup', id: 99n });
  t.false(a.equals(b));
  t.deepEqual(decodeCaptureKey(a), { kind: 'netns', id: 99n });
  t.deepEqual(decodeCaptureKey(b), { kind: 'cgroup', id: 99n });
});

test('CIDR keys put the workload id ahead of the address, big-endian', (t) => {
  const k = encodeCidrKey(0x01020304, parseCidr('10.96.0.0/12'));
  t.is(k.readUInt32LE(0), 32 + 12);
  t.deepEqual([...k.subarray(4, 8)], [1, 2, 3, 4]);
  t.deepEqual([...k.subarray(8)], [10, 96, 0, 0]);
  const d = decodeCidrKey(k);
  t.is(d.workloadId, 0x01020304);
  t.is(formatCidr(d.cidr), '10.96.0.0/12');
});

test('parseCidr clears host bits and accepts bare addresses', (t) => {
  t.is(formatCidr(parseCidr('10.1.2.3/8')), '10.0.0.0/8');
  t.is(formatCidr(parseCidr('192.168.1.7')), '192.168.1.7/32');
  t.is(formatCidr(parseCidr('fd00:96::10/64')), 'fd00:96::/64');
  t.is(formatCidr(parseCidr('::ffff:10.0.0.1/128')), '::ffff:a00:1/128');
});

test('parseCidr rejects what is not a CIDR, saying what is expected', (t) => {
  for (const bad of ['10.0.0.0/33', 'nonsense', '10.0.0/8', 'fd00::/129', '10.0.0.0/-1', '10.0.0.0/8x']) {
    const err = t.throws(() => parseCidr(bad));
    t.regex(err!.message, /CIDR|prefix length/);
  }
});

test('IPv6 formatting compresses the longest zero run', (t) => {
  t.is(formatIp(ipv6Bytes('fd00:96:0:0:0:0:0:10')), 'fd00:96::10');
  t.is(formatIp(ipv6Bytes('::1')), '::1');
  t.is(formatIp(ipv6Bytes('1:0:0:2:0:0:0:3')), '1:0:0:2::3');
});

test('original destinations decode as written by connect4/6', (t) => {
  const b = Buffer.alloc(SIZES.origdst);
  Buffer.from([10, 96, 0, 10]).copy(b, 0);
  b.writeUInt16BE(80, 16);
  b.writeUInt16LE(2, 18);
  b.writeUInt32LE(7, 20);
  t.deepEqual(decodeOrigDst(b), { family: 4, address: '10.96.0.10', port: 80, workloadId: 7 });
});
