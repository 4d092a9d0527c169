// SPDX-License-Identifier: Apache-2.0
// Which Redis URLs kernmesh takes, and what it says of the others (before any connection).
import test from 'ava';
import { parseRedisUrl } from '../../src/config/redis.ts';

test('the accepted forms: redis://, rediss://, unix:///path and a bare path, each with a database number', (t) => {
  t.like(parseRedisUrl('redis://127.0.0.1:6379'), { kind: 'tcp', tls: false, db: 0 });
  t.like(parseRedisUrl('redis://127.0.0.1:6379/'), { kind: 'tcp', db: 0 });
  t.like(parseRedisUrl('redis://:s3cret@redis.kernmesh-system:6379/3'), { kind: 'tcp', db: 3 });
  t.like(parseRedisUrl('redis://user:pw@[::1]:6380/15'), { kind: 'tcp', db: 15 });
  t.like(parseRedisUrl('rediss://redis.example:6380/2'), { kind: 'tcp', tls: true, db: 2 });
  t.like(parseRedisUrl('REDIS://h'), { kind: 'tcp', db: 0 });
  t.deepEqual(parseRedisUrl('unix:///run/kernmesh/demo/redis.sock'), { kind: 'unix', path: '/run/kernmesh/demo/redis.sock', db: 0 });
  t.deepEqual(parseRedisUrl('unix:///run/redis%20x.sock?db=4'), { kind: 'unix', path: '/run/redis x.sock', db: 4 });
  t.deepEqual(parseRedisUrl('/run/redis.sock'), { kind: 'unix', path: '/run/redis.sock', db: 0 });
  t.deepEqual(parseRedisUrl('/run/redis.sock?db=7'), { kind: 'unix', path: '/run/redis.sock', db: 7 });
});

test('anything else is refused with the reason and the accepted forms, the password never shown', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['http://127.0.0.1:6379', /unsupported scheme "http"/],
    ['https://127.0.0.1:6379', /unsupported scheme "https"/],
    ['tcp://127.0.0.1:6379', /unsupported scheme "tcp"/],
    ['localhost:6379', /unsupported scheme "localhost"/],
    ['127.0.0.1:6379', /not a URL/],
    ['redis://127.0.0.1:6379/abc', /the path must be a database number \(0, 1, \.\.\.\), not "abc"/],
    ['redis://127.0.0.1:6379/3/4', /not "3\/4"/],
    ['redis://127.0.0.1:6379/-1', /not "-1"/],
    ['redis://127.0.0.1:6379/99999999999', /not "99999999999"/],
    ['redis://127.0.0.1:6379?db=3', /give the database as the path/],
    ['redis:///6379', /no host/],
    ['unix://run/redis.sock', /three slashes/],
    ['unix:///run/redis.sock?db=x', /\?db= must be a database number/],
    ['unix:///run/redis.sock?timeout=1', /unknown parameter "timeout"/],
    ['/run/redis.sock?database=1', /unknown parameter "database"/],
    ['http://user:hunter2@127.0.0.1:6379', /"http:\/\/\*\*\*@127\.0\.0\.1:6379"/],
  ];
  for (const [url, why] of cases) {
    const err = t.throws(() => parseRedisUrl(url), { instanceOf: Error }, url);
    t.regex(err?.message ?? '', why, url);
    t.regex(err?.message ?? '', /use redis:\/\/\[\[user\]:password@\]host\[:port\]\[\/db\], rediss:\/\/.*unix:\/\/\/path\/to\/redis\.sock\[\?db=N\]/, url);
    t.is((err as { code?: string } | undefined)?.code, 'KM_ERR_INVALID_CONFIG', url);
    t.notRegex(err?.message ?? '', /hunter2/);
  }
});
