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
