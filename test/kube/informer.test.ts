// SPDX-License-Identifier: Apache-2.0
// The informer (the real @kubernetes/client-node ListWatch) against a fake API
// server speaking the real list/watch protocol: events, bookmarks, 410 Gone
// (as an event and as HTTP), dropped streams, and errors that would stop the
// library's own watch for good.
import test from 'ava';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { kubeConfigFor } from '../../src/kube/client.ts';
import { Informer } from '../../src/kube/informer.ts';
import { silentLogger } from '../../src/log.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';
import { pod, until } from './helpers/objects.ts';

async function setup(t: import('ava').ExecutionContext, fieldSelector?: string) {
  const api = new FakeApiServer();
  await api.start();
  const kc = kubeConfigFor(api.url);
  const core = kc.makeApiClient(CoreV1Api);
  const inf = new Informer<V1Pod>({
    name: 'pods',
    kc,
    path: '/api/v1/pods',
    list: () => core.listPodForAllNamespaces(fieldSelector ? { fieldSelector } : {}),
    ...(fieldSelector ? { fieldSelector } : {}),
    log: silentLogger,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  const seen: string[] = [];
  inf.onChange = (type, o) => seen.push(`${type} ${o.metadata?.name}`);
  t.teardown(async () => {
    inf.stop();
    await api.close();
  });
  return { api, inf, seen };
}

const names = (inf: Informer<V1Pod>) => inf.list().map((p) => p.metadata!.name).sort();

test('lists, then follows ADDED, MODIFIED and DELETED events; the field selector keeps other nodes out', async (t) => {
  const { api, inf, seen } = await setup(t, 'spec.nodeName=node-a');
  api.put('pods', pod('shop', 'a', 'node-a'));
  api.put('pods', pod('shop', 'other', 'node-b'));
  inf.start();
  await inf.synced;
  t.deepEqual(names(inf), ['a']);
  api.put('pods', pod('shop', 'b', 'node-a'));
  api.put('pods', pod('shop', 'a', 'node-a', { labels: { version: 'v2' } }));
  api.remove('pods', 'b', 'shop');
  api.put('pods', pod('shop', 'c', 'node-b'));
  await until(() => seen.includes('delete b'), 'the delete');
  t.deepEqual(seen, ['add a', 'add b', 'update a', 'delete b']);
  t.is(inf.get('a', 'shop')?.metadata?.labels?.version, 'v2');
  const watch = api.requests.find((r) => r.watch);
  t.is(watch?.fieldSelector, 'spec.nodeName=node-a');
});

test('a bookmark advances the resourceVersion, so a dropped stream resumes without a relist', async (t) => {
  const { api, inf } = await setup(t);
  api.put('pods', pod('shop', 'a', 'node-a'));
  inf.start();
  await inf.synced;
  await until(() => api.openWatches() === 1, 'the watch');
  api.put('leases', { metadata: { name: 'unrelated', namespace: 'x' } }); // moves the global resourceVersion
  api.bookmark();
  const bookmarkRv = api.get('leases', 'unrelated', 'x')!.metadata.resourceVersion ?? null;
  await until(() => true, 'a tick');
  await new Promise((r) => setTimeout(r, 50));
  const lists = () => api.requests.filter((r) => !r.watch && r.path === '/api/v1/pods').length;
  t.is(lists(), 1);
  t.is(api.dropWatches(), 1);
  api.put('pods', pod('shop', 'b', 'node-a'));
  await until(() => names(inf).includes('b'), 'the event after the drop');
  t.is(lists(), 1, 'no relist after a dropped stream');
  const rewatch = api.requests.filter((r) => r.watch).at(-1)!;
  t.is(rewatch.resourceVersion, bookmarkRv, 'the watch resumed from the bookmark');
});

for (const goneAs of ['event', 'http'] as const) {
  test(`410 Gone (${goneAs === 'event' ? 'an ERROR event' : 'an HTTP 410'}) relists, and objects deleted meanwhile are deleted`, async (t) => {
    const { api, inf, seen } = await setup(t);
    api.goneAs = goneAs;
    api.put('pods', pod('shop', 'a', 'node-a'));
    api.put('pods', pod('shop', 'b', 'node-a'));
    inf.start();
    await inf.synced;
    await until(() => api.openWatches() === 1, 'the watch');
    // While the informer is disconnected, b goes, c comes, and the history is compacted away.
    api.dropWatches();
    api.remove('pods', 'b', 'shop');
    api.put('pods', pod('shop', 'c', 'node-a'));
    api.compact();
    await until(() => names(inf).join() === 'a,c', 'the relist');
    t.true(seen.includes('delete b'));
    t.true(seen.includes('add c'));
    t.true(api.requests.filter((r) => !r.watch).length >= 2, 'listed again');
  });
}

test('an error that stops the library’s watch (a 500, the server away) is retried with backoff until it works', async (t) => {
  const { api, inf } = await setup(t);
  api.failNext('pods', 500, { watch: false, times: 2 });
  inf.start();
  await inf.synced;
  t.true(inf.restarts >= 2, `restarted ${inf.restarts} times`);
  t.is(names(inf).length, 0);
  await until(() => api.openWatches() === 1, 'the watch');
  // Now the watch itself fails (the stream drops and the next watch gets a 503), and recovers.
  api.failNext('pods', 503, { watch: true, times: 3 });
  api.dropWatches();
  await until(() => api.openWatches() === 1 && inf.restarts >= 3, 'the watch again');
  api.put('pods', pod('shop', 'late', 'node-a'));
  await until(() => names(inf).includes('late'), 'the event after recovery');
  t.pass();
});
