// SPDX-License-Identifier: Apache-2.0
// Random sequences of writes, deletes and agent restarts: the agent's view
// always ends equal to Redis.
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshStore } from '../../src/config/store.ts';
import { AgentSync } from '../../src/config/sync.ts';
import { RedisServer } from './helpers/redis-server.ts';
import { service } from './helpers/objects.ts';

type Op = { t: 'put'; svc: number; port: number } | { t: 'delete'; svc: number } | { t: 'restart' } | { t: 'batch'; svcs: number[] };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('put' as const), svc: fc.integer({ min: 0, max: 9 }), port: fc.integer({ min: 1, max: 65535 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('delete' as const), svc: fc.integer({ min: 0, max: 9 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'restart' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('batch' as const), svcs: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 5 }) }) },
);

test('random writes, deletes and restarts end with the agent equal to Redis', async (t) => {
  const server = await new RedisServer().start();
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-prop-'));
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.integer({ min: 3, max: 60 }), async (ops, maxLen) => {
      // A fresh mesh per run (its own hash tag) on the same server; a short stream so trimming happens.
      const mesh = `prop${++run}`;
      const store = new MeshStore(server.client(), { mesh, streamMaxLen: maxLen });
      const make = () => new AgentSync({ node: 'p', redis: { url: server.url, mesh }, blockMs: 100, cachePath: join(dir, `${mesh}.json`), persistIntervalMs: 5 });
      let agent = make();
      await agent.start();
      const live = new Set<number>();
      try {
        for (const o of ops) {
          if (o.t === 'put') {
            await store.write([{ op: 'put', object: service(`s${o.svc}`, 'p', o.port) }]);
            live.add(o.svc);
          } else if (o.t === 'delete' && live.has(o.svc)) {
            await store.write([{ op: 'delete', ref: { kind: 'Service', key: `p/s${o.svc}` } }]);
            live.delete(o.svc);
          } else if (o.t === 'batch') {
            await store.write(o.svcs.map((s) => ({ op: 'put' as const, object: service(`s${s}`, 'p', 1000 + s) })));
            for (const s of o.svcs) live.add(s);
          } else if (o.t === 'restart') {
            await agent.stop();
            agent = make();
            await agent.start();
          }
        }
        const snap = await store.snapshot();
        if (agent.appliedVersion < snap.version) {
          await new Promise<void>((resolve) => {
            const on = () => agent.appliedVersion >= snap.version && (agent.off('applied', on), resolve());
            agent.on('applied', on);
            on();
          });
        }
        const mine = [...agent.current().objects].map(([k, v]) => [k, v.version, JSON.stringify(v.object.spec)]).sort();
        const theirs = [...snap.objects].map(([k, v]) => [k, v.version, JSON.stringify(v.object.spec)]).sort();
        return JSON.stringify(mine) === JSON.stringify(theirs) && agent.appliedVersion === snap.version;
      } finally {
        await agent.stop();
      }
    }),
    { numRuns: 25 },
  );
  t.pass();
});
