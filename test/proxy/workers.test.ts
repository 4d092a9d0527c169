// SPDX-License-Identifier: Apache-2.0
// Every core: worker processes share one port (SO_REUSEPORT) and each swaps its table on change.
import test from 'ava';
import { ProxyWorkers } from '../../src/proxy/workers.ts';
import { backend, endpoints, service } from './helpers/fixtures.ts';
import { rawExchange } from './helpers/raw.ts';
import { freePort } from '../../src/ports.ts';


test('two workers on one port share the connections and follow config changes', async (t) => {
  const a = await backend(t, 'a');
  const b = await backend(t, 'b');
  const workers = await ProxyWorkers.start(2);
  t.teardown(() => workers.stop());
  const stored = (objs: ReturnType<typeof service>[]) => objs.map((object, i) => ({ version: i + 1, object }));
  await workers.setObjects(1, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: a.port }])]));
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: 'shop/web' }]);

  const answers = await Promise.all(Array.from({ length: 60 }, () => rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')));
  t.true(answers.every((r) => /"backend":"a"/.test(r.text)));
  const stats = await workers.stats();
  t.is(stats.length, 2);
  t.true(stats.every((s) => s.connectionsTotal > 0), `connections per worker: ${stats.map((s) => s.connectionsTotal).join(', ')}`);
  t.is(stats.reduce((n, s) => n + s.connectionsTotal, 0), 60);

  await workers.setObjects(2, stored([service('web', 'shop'), endpoints('web', 'shop', [{ port: b.port }])]));
  const after = await Promise.all(Array.from({ length: 10 }, () => rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')));
  t.true(after.every((r) => /"backend":"b"/.test(r.text)), 'every worker switched to the new table');
  t.true((await workers.stats()).every((s) => s.version === 2));
});
