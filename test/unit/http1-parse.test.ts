// SPDX-License-Identifier: Apache-2.0
// The HTTP/1 head parser's fast-path facts: which heads may be forwarded as received.
import test from 'ava';
import { HttpParseError, headEnd, normalizeTarget, parseHead } from '../../src/proxy/http1/parse.ts';

const parse = (text: string, kind: 'request' | 'response' = 'request') => {
  const buf = Buffer.from(text, 'latin1');
  const head = parseHead(buf, headEnd(buf), kind);
  if (kind === 'request') normalizeTarget(head);
  return head;
};

test('plain heads: nothing hop-by-hop, one framing header, HTTP/1.1, target left alone', (t) => {
  const cases: Array<[string, boolean, ('request' | 'response')?]> = [
    ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', true],
    ['POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n', true],
    ['POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', true],
    ['POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: timeout=5\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: keep-alive\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n', false],
    ['GET / HTTP/1.0\r\n\r\n', false],
    ['GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n', false],
    ['GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n', false],
    ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n', true, 'response'],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', true, 'response'],
    ['HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\ncontent-length: 2\r\n\r\n', false, 'response'],
    ['HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n', false, 'response'],
  ];
  for (const [text, plain, kind] of cases) t.is(parse(text, kind).plain, plain, JSON.stringify(text));
});

test('header names are matched without regard to case, values kept as sent', (t) => {
  const h = parse('PUT /u HTTP/1.1\r\nhOsT: Example\r\nX-REQUEST-ID: Abc\r\nCONTENT-length:  12 \r\nExpect: 100-Continue\r\n\r\n');
  t.is(h.host, 'Example');
  t.is(h.requestId, 'Abc');
  t.is(h.contentLength, 12);
  t.true(h.expectContinue);
  t.deepEqual(h.headers, ['hOsT', 'Example', 'X-REQUEST-ID', 'Abc', 'CONTENT-length', '12', 'Expect', '100-Continue']);
  t.is(h.raw?.length, h.size);
});

test('line ends and bytes: a bare CR or LF, a control character, or a bad length is refused', (t) => {
  const bad = [
    'GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n',
    'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
  ];
  for (const text of bad) {
    const err = t.throws(() => parse(text), { instanceOf: HttpParseError }, JSON.stringify(text));
    t.is(err?.status, 400);
  }
});

test('headEnd finds the first blank line, also when the scan resumes after a partial read', (t) => {
  const text = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n');
  t.is(headEnd(text), 27);
  t.is(headEnd(text.subarray(0, 25)), -1);
  // Resuming from where the last scan stopped still sees a CRLFCRLF that straddles it.
  t.is(headEnd(text, 25), 27);
  t.is(headEnd(Buffer.from('\r\n\r\n')), 4);
});

test('request lines are checked as bytes: method, target and version', (t) => {
  const h = parse('DELETE /a?b=c HTTP/1.0\r\n\r\n');
  t.is(h.method, 'DELETE');
  t.is(h.target, '/a?b=c');
  t.is(h.minor, 0);
  t.is(parse('GET /x HTTP/1.1\r\nHost: a\r\n\r\n').method, 'GET');
  const refused: Array<[string, number]> = [
    ['GET\r\n', 400],
    [' / HTTP/1.1\r\n', 400],
    ['GET /\r\n', 400],
    ['G(T / HTTP/1.1\r\n', 400],
    ['GET  HTTP/1.1\r\n', 400],
    ['GET /a\u00a0b HTTP/1.1\r\n', 400],
    ['GET /a\u007fb HTTP/1.1\r\n', 400],
    ['GET / HTTP/1.2\r\n', 505],
    ['GET / HTTP/11\r\n', 505],
    ['GET / FTP/1.1\r\n', 400],
  ];
  for (const [line, status] of refused) {
    const err = t.throws(() => parse(`${line}Host: a\r\n\r\n`), { instanceOf: HttpParseError }, JSON.stringify(line));
    t.is(err?.status, status, JSON.stringify(line));
  }
});

test('a response head: status as bytes, the reason phrase kept where the head is written out again', (t) => {
  const plain = parse('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n', 'response');
  t.is(plain.status, 200);
  t.is(plain.target, '', 'forwarded as received: no string made of its reason');
  t.is(parse('HTTP/1.1 100 Continue\r\n\r\n', 'response').target, 'Continue');
  t.is(parse('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n', 'response').target, 'Switching Protocols');
  t.is(parse('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n', 'response').target, 'Not Found');
  t.is(parse('HTTP/1.1 204\r\nConnection: close\r\n\r\n', 'response').target, '');
  for (const line of ['HTTP/1.1 20 OK', 'HTTP/1.1 600 X', 'HTTP/2.0 200 OK', 'HTTP/1.1 200OK', 'ICY 200 OK']) {
    const err = t.throws(() => parse(`${line}\r\n\r\n`, 'response'), { instanceOf: HttpParseError }, line);
    t.is(err?.status, 502);
  }
});

test('the header list is made on first use and matches the lines received', (t) => {
  const h = parse('GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\n');
  t.deepEqual(h.headers, ['Host', 'a', 'X-Empty', '', 'X-Pad', 'v']);
  t.is(h.headers, h.headers, 'made once');
});

test('a target is normalized as Istio does by default: dot segments resolved, a backslash in the path read as a slash', (t) => {
  const target = (raw: string) => parse(`GET ${raw} HTTP/1.1\r\nHost: a\r\n\r\n`).target;
  t.is(target('/a/../admin/x'), '/admin/x');
  t.is(target('/a/%2e%2E/admin'), '/admin');
  t.is(target('/admin\\x'), '/admin/x');
  t.is(target('/a\\..\\admin'), '/admin');
  t.is(target('/q?path=a\\b'), '/q?path=a\\b', 'a backslash in the query is left alone');
  t.is(target('/plain/path?x=1'), '/plain/path?x=1');
  t.false(parse('GET /admin\\x HTTP/1.1\r\nHost: a\r\n\r\n').plain, 'not forwarded as received');
});
