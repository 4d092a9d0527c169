// SPDX-License-Identifier: Apache-2.0
// Rate limits for a whole node: worker processes admit from credit the primary's buckets grant them.
import test from 'ava';
import type { MeshObject } from '../../src/config/objects.ts';
import { type Admitter, RateLimitLeases, type TokenAsk, TokenBank, localAdmitter } from '../../src/proxy/policy/node-limits.ts';
import { type CompiledRateLimit, grant } from '../../src/proxy/policy/rate-limit.ts';
import { buildTable } from '../../src/proxy/routing/table.ts';

const obj = (kind: MeshObject['kind'], name: string, spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace: 'shop' }, spec });

/** The primary's table: shop/web with one RateLimit. */
function tableWith(limit: Record<string, unknown>) {
  const objects = [obj('Service', 'web', { hosts: ['web.shop.svc.cluster.local'], addresses: [], ports: [{ port: 80, targetPort: 80, protocol: 'http' }] }), obj('RateLimit', 'web', { service: 'web', ...limit })];
  return buildTable(1, objects.map((object, i) => ({ version: i + 1, object })));
}

/** A node of `workers` worker processes and the primary, on one clock the test moves. */
function node(limit: Record<string, unknown>, workers = 2) {
  const table = tableWith(limit);
  const limits = table.services.get('shop/web')!.rateLimits;
  const clock = { now: 1_000_000 };
  const bank = new TokenBank(() => table, () => workers + 1);
  const asks: TokenAsk[] = [];
  // The IPC round trip, as the primary answers it: later, on the primary's clock.
  const lease = () => new RateLimitLeases((a) => (asks.push(a), new Promise((r) => setImmediate(() => r(bank.answer(a, clock.now))))));
  return { limits, clock, asks, leases: Array.from({ length: workers }, lease) };
}

/** One request through an admitter, waiting for the bank as a session does. */
async function admitted(a: Admitter, limits: CompiledRateLimit[], now: number, source = 'shop/frontend'): Promise<boolean> {
  for (let round = 0; round < 16; round++) {
    const r = a.admit(limits, undefined, source, now);
    if (typeof r === 'boolean') return r;
    await r;
  }
  throw new Error('still waiting after 16 rounds');
}

async function count(a: Admitter, limits: CompiledRateLimit[], now: number, n: number, source?: string): Promise<number> {
  let yes = 0;
  for (let i = 0; i < n; i++) if (await admitted(a, limits, now, source)) yes++;
  return yes;
}

test('processes together never pass the limit, and one process alone can use all of it', async (t) => {
  const { limits, clock, leases } = node({ maxTokens: 30, fillInterval: '1h' });
  const [a, b] = leases as [RateLimitLeases, RateLimitLeases];
  t.is(await count(a, limits, clock.now, 25), 25, 'one worker gets what the node has, not a third of it');
  // The rest, asked for by everyone at once (the primary serving its own requests from the same buckets).
  const all = await Promise.all([count(a, limits, clock.now, 10), count(b, limits, clock.now, 10), count(localAdmitter, limits, clock.now, 10)]);
  t.is(all.reduce((x, y) => x + y, 0), 5, `admitted per process: ${all.join(', ')}`);
});

test('a grant is at most 1/(2·processes) of what is left, and at least one while there is room', (t) => {
  const { limits, clock } = node({ maxTokens: 60, fillInterval: '1h' });
  const granted = (want: number) => grant(limits, 'shop/frontend', clock.now, want, 3).granted;
  t.is(granted(256), 10, '60 left, 3 processes');
  t.is(granted(256), 8, '50 left');
  t.is(granted(5), 5, 'no more than asked for');
  let total = 0;
  for (let n = granted(256); n > 0; n = granted(256)) total += n;
  t.is(total, 37, 'down to single tokens, and every one of them');
});

test('credit is asked for ahead: a steady stream of requests does not stop for the round trip', async (t) => {
  const { limits, clock, leases, asks } = node({ maxTokens: 1_000_000, fillInterval: '1h' });
  const a = leases[0]!;
  t.true(await admitted(a, limits, clock.now), 'the first request waits for the first grant');
  let waited = 0;
  for (let i = 0; i < 2000; i++) {
    const r = a.admit(limits, undefined, 'shop/frontend', clock.now);
    if (r instanceof Promise) {
      waited++;
      await r;
    } else t.true(r);
    // The event loop's turn now and then, when the agent's answer can come in.
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  t.is(waited, 0);
  t.true(asks.length >= 2000 / 256, `${asks.length} asks`);
});

test('a refusal is believed until the next fill: refused requests cost no round trip', async (t) => {
  const { limits, clock, leases, asks } = node({ maxTokens: 2, tokensPerFill: 2, fillInterval: '1s' });
  const a = leases[0]!;
  t.is(await count(a, limits, clock.now, 3), 2);
  const asked = asks.length;
  for (let i = 0; i < 100; i++) t.false(a.admit(limits, undefined, 'shop/frontend', clock.now + 999) as boolean);
  t.is(asks.length, asked, 'answered here, without asking');
  clock.now += 1000;
  t.true(await admitted(a, limits, clock.now), 'the bucket filled again: asked and granted');
});

test('credit lapses at the end of the fill interval it came from', async (t) => {
  const { limits, clock, leases, asks } = node({ maxTokens: 60, tokensPerFill: 60, fillInterval: '1s' });
  const a = leases[0]!;
  t.true(await admitted(a, limits, clock.now));
  t.is(asks.length, 1);
  t.true(await admitted(a, limits, clock.now + 999), 'still credit from the first grant');
  t.is(asks.length, 1);
  clock.now += 1000;
  t.true(await admitted(a, limits, clock.now));
  t.is(asks.length, 2, 'the old credit was void: asked again');
});

test('per-source buckets and quotas keep their credit per caller', async (t) => {
  const perSource = node({ maxTokens: 2, fillInterval: '1h', perSource: true });
  const a = perSource.leases[0]!;
  t.is(await count(a, perSource.limits, perSource.clock.now, 3, 'shop/x'), 2);
  t.is(await count(a, perSource.limits, perSource.clock.now, 3, 'shop/y'), 2, "x's refusal is not y's");
  const quota = node({ maxTokens: 100, fillInterval: '1h', quotas: { 'shop/x': 3 } });
  const [b, c] = quota.leases as [RateLimitLeases, RateLimitLeases];
  t.is(await count(b, quota.limits, quota.clock.now, 2, 'shop/x') + (await count(c, quota.limits, quota.clock.now, 2, 'shop/x')), 3, 'the quota is the node\'s, across workers');
  t.is(await count(b, quota.limits, quota.clock.now, 5, 'shop/y'), 5);
});

test('an ask the agent does not answer admits requests for a while, then asks again', async (t) => {
  const { limits } = node({ maxTokens: 1, fillInterval: '1h' });
  let fail = true;
  let asked = 0;
  const failures: string[] = [];
  const a = new RateLimitLeases(() => (asked++, fail ? Promise.reject(new Error('no answer')) : Promise.resolve({ granted: 0, expires: Date.now(), dry: { 'shop/web': Date.now() + 3_600_000 } })), 50);
  a.onUnanswered = (err) => failures.push(err.message);
  t.true(await admitted(a, limits, Date.now()));
  t.deepEqual(failures, ['no answer']);
  t.true(await admitted(a, limits, Date.now()), 'admitted without asking');
  t.is(asked, 1);
  fail = false;
  await new Promise((r) => setTimeout(r, 60));
  t.false(await admitted(a, limits, Date.now()), 'the agent answers again, and its answer holds');
  t.is(asked, 2);
});
