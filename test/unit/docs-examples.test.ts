// SPDX-License-Identifier: Apache-2.0
// The configuration examples a newcomer copies are valid, and the full agent example names every key.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { AgentConfigSchema, AgentWorkload, KubernetesSettings, parseAgentConfig, readAgentConfig } from '../../src/agent/config.ts';
import { readRegistry } from '../../src/controller/local.ts';

const root = new URL('../../', import.meta.url).pathname;
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The first ```yaml block after a heading. */
function yamlAfter(heading: string): string {
  const at = readme.indexOf(heading);
  if (at < 0) throw new Error(`README has no "${heading}"`);
  const m = /```yaml\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!m) throw new Error(`no yaml block after "${heading}"`);
  return m[1]!;
}

test('docs/agent.yaml is a valid agent configuration that names every key the agent takes', (t) => {
  const path = join(root, 'docs/agent.yaml');
  const config = readAgentConfig(path);
  t.is(config.node, 'node-a');
  t.is(config.workloads.length, 1);
  const text = readFileSync(path, 'utf8');
  const keys = [...Object.keys(AgentConfigSchema.shape), ...Object.keys(KubernetesSettings.shape), ...Object.keys(AgentWorkload.shape)];
  for (const key of keys) t.regex(text, new RegExp(`^\\s*(# )?(- )?${key}:`, 'm'), `docs/agent.yaml does not show ${key}`);
});

test("the README's registry and agent examples are valid", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'services.yaml');
  writeFileSync(file, yamlAfter('### The local registry'));
  t.deepEqual(
    readRegistry(file).map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`),
    ['Service/shop/reviews', 'Endpoints/shop/reviews', 'Service/shop/ratings', 'Endpoints/shop/ratings'],
  );
  const agent = parseAgentConfig(parse(yamlAfter('### Running the agent yourself')), 'README');
  t.is(agent.mode, 'ebpf');
  t.is(agent.workloads[0]?.name, 'productpage');
});
