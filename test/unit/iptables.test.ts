// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { renderRules } from '../../src/datapath/iptables.ts';

test('IPv4 rules: proxy mark, loopback and exclusions return before the REDIRECT', (t) => {
  const rules = renderRules(4, { outboundPort: 15001, proxyMark: 1337 }, [22, 15020], ['10.97.0.0/16', 'fd00::/8']);
  t.is(
    rules,
    [
      '*nat',
      ':KERNMESH_OUTPUT - [0:0]',
      '-A KERNMESH_OUTPUT -m mark --mark 1337 -j RETURN',
      '-A KERNMESH_OUTPUT -d 127.0.0.0/8 -j RETURN',
      '-A KERNMESH_OUTPUT -p tcp --dport 22 -j RETURN',
      '-A KERNMESH_OUTPUT -p tcp --dport 15020 -j RETURN',
      '-A KERNMESH_OUTPUT -d 10.97.0.0/16 -j RETURN',
      '-A KERNMESH_OUTPUT -p tcp -j REDIRECT --to-ports 15001',
      'COMMIT',
      '',
    ].join('\n'),
  );
});

test('IPv6 rules keep only IPv6 CIDRs and skip ::1', (t) => {
  const rules = renderRules(6, { outboundPort: 15001, proxyMark: 0 }, [], ['10.97.0.0/16', 'fd00::/8']);
  t.true(rules.includes('-d ::1/128 -j RETURN'));
  t.true(rules.includes('-d fd00::/8 -j RETURN'));
  t.false(rules.includes('10.97.0.0'));
  t.false(rules.includes('--mark'));
});
