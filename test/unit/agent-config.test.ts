// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidAgentConfigError, parseAgentConfig, readAgentConfig } from '../../src/agent/config.ts';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.ts';
import { KmError } from '../../src/errors.ts';

test('defaults fill in an agent configuration', (t) => {
  const c = parseAgentConfig({ node: 'n1', attachCgroup: '/sys/fs/cgroup/pods' });
  t.like(c, { node: 'n1', mode: 'ebpf', outboundPort: 15001, adminPort: 15000, pinDir: '/sys/fs/bpf/kernmesh', workloads: [], nodeAddresses: 'auto' });
});

test('a bad agent configuration names the file and the field', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-agent-cfg-'));
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, 'node: n1\nmode: magic\n');
  const err = t.throws(() => readAgentConfig(file), { instanceOf: KmError });
  t.is((err as KmError).code, 'KM_ERR_INVALID_CONFIG');
  t.regex(err!.message, /agent\.yaml: mode: /);
  t.throws(() => readAgentConfig(join(dir, 'missing.yaml')), { message: /cannot read the agent configuration/ });
  t.throws(() => parseAgentConfig({ node: 'n1', workloads: [{ name: 'a', netnsPath: 'relative', cgroupPath: '/x' }] }), { message: /workloads\.0\.netnsPath/ });
  t.throws(() => parseAgentConfig({ node: 'n1', nodeAddresses: ['10.0.0.1', 'node-a'] }), { message: /nodeAddresses/ });
});

test('every problem of an agent configuration is named at once, settings that cannot work together included', (t) => {
  const err = t.throws(
    () =>
      parseAgentConfig(
        {
          node: 'n1',
          mode: 'ebpf',
          outboundPort: 70000,
          inboundPort: 15001,
          adminPort: 15090,
          metricsPort: 15090,
          redis: { url: 'localhost:6379' },
          proxyCgroup: 'kernmesh',
          workloads: [
            { name: 'a', namespace: 'shop', netnsPath: '/run/netns/a', cgroupPath: '/sys/fs/cgroup/pods/a' },
            { name: 'a', namespace: 'shop', netnsPath: '/run/netns/b', cgroupPath: '/sys/fs/cgroup/pods/b' },
          ],
        },
        'agent.yaml',
      ),
    { instanceOf: InvalidAgentConfigError },
  )!;
  t.is(err.code, 'KM_ERR_INVALID_CONFIG');
  t.is(exitCodeFor(err), EXIT.INVALID);
  t.deepEqual(err.issues.map((i) => i.path).sort(), ['attachCgroup', 'metricsPort', 'outboundPort', 'proxyCgroup', 'redis.url', 'workloads.1.name']);
  t.regex(err.message, /^invalid agent configuration \(6 problems\):\n {2}agent\.yaml: /);
  t.regex(err.message, /agent\.yaml: attachCgroup: ebpf mode needs attachCgroup/);
  t.regex(err.message, /agent\.yaml: workloads\.1\.name: workload shop\/a is also workloads\.0/);
  t.regex(err.message, /agent\.yaml: redis\.url: Redis URL "localhost:6379": .*; use redis:\/\//);
  // outboundPort is out of range here, so inboundPort's clash is not made up from a value that is not one.
  t.throws(() => parseAgentConfig({ node: 'n1', attachCgroup: '/sys/fs/cgroup/pods', inboundPort: 15001 }), { message: /inboundPort: is outboundPort too \(15001\)/ });
});

test('ebpf mode needs attachCgroup unless the kubepods cgroup is found on a Kubernetes node; the other modes do not', (t) => {
  const err = t.throws(() => parseAgentConfig({ node: 'n1' }, 'agent.yaml'), { instanceOf: KmError })!;
  t.is(err.code, 'KM_ERR_INVALID_CONFIG');
  t.is(err.message.split('\n').length, 1, 'one problem, one line');
  t.regex(err.message, /^agent\.yaml: attachCgroup: ebpf mode needs attachCgroup/);
  t.throws(() => parseAgentConfig({ node: 'n1', attachCgroup: 'kubepods' }), { message: /attachCgroup: .*"\/"/ });
  t.is(parseAgentConfig({ node: 'n1', kubernetes: { enabled: true } }).attachCgroup, undefined);
  t.is(parseAgentConfig({ node: 'n1', mode: 'iptables' }).mode, 'iptables');
  t.is(parseAgentConfig({ node: 'n1', mode: 'off' }).mode, 'off');
});
