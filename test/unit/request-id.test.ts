// SPDX-License-Identifier: Apache-2.0
// Request ids the proxy makes up: version 4 UUIDs, never repeated across batches.
import test from 'ava';
import { newRequestId } from '../../src/proxy/http1/request-id.ts';

test('made-up request ids are distinct random (version 4) UUIDs, across many batches', (t) => {
  const ids = new Set<string>();
  const hexCounts = new Map<string, number>();
  for (let i = 0; i < 5000; i++) {
    const id = newRequestId();
    t.regex(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    ids.add(id);
    for (const c of id.slice(0, 8)) hexCounts.set(c, (hexCounts.get(c) ?? 0) + 1);
  }
  t.is(ids.size, 5000);
  // Every hex digit turns up in the random part (40 000 digits: about 2 500 each).
  t.is(hexCounts.size, 16);
  for (const n of hexCounts.values()) t.true(n > 1500, `a digit appears ${n} times`);
});
