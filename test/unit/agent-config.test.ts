// SPDX-License-Identifier: Apache-2.0
import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentConfig, readAgentConfig } from '../../src/agent/config.ts';
import { KmError } from '../../src/errors.ts';

test('defaults fill in an agent configuration', (t) => {
  const c = parseAgentConfig({ node: 'n1' });
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
