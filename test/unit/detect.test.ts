// SPDX-License-Identifier: Apache-2.0
// Protocol detection on the first bytes, including a ClientHello that arrives in pieces.
import test from 'ava';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { classify, detect } from '../../src/proxy/detect.ts';

test('a TLS record is classified once it is whole, so its SNI can be read', (t) => {
  const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08]), Buffer.alloc(8, 1)]);
  t.is(classify(hello.subarray(0, 3)), 'more');
  t.is(classify(hello.subarray(0, 9)), 'more', 'part of the record');
  t.is(classify(hello), 'tls');
  t.is(classify(Buffer.from([0x16, 0x01, 0x00])), 'tcp', 'not a TLS version');
});

test('HTTP/1.x, h2 prior knowledge, and anything else', (t) => {
  t.is(classify(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
  t.is(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'http2');
  t.is(classify(Buffer.from('PRI * HT')), 'more');
  t.is(classify(Buffer.from([0x00, 0x01, 0x02])), 'tcp');
});

test('any method token starts HTTP/1.x; empty lines before it are allowed', (t) => {
  t.is(classify(Buffer.from('M-SEARCH * HTTP/1.1\r\n')), 'http1');
  t.is(classify(Buffer.from('VERSION-CONTROL /a HTTP/1.1\r\n')), 'http1');
  t.is(classify(Buffer.from('\r\nGET / HTTP/1.1\r\n')), 'http1');
  t.is(classify(Buffer.from('\r\n')), 'more');
  t.is(classify(Buffer.from('M-SEA')), 'more', 'part of a method');
  t.is(classify(Buffer.from('get / HTTP/1.1\r\n')), 'tcp', 'methods are case-sensitive');
  t.is(classify(Buffer.from('\r\n\u0000\u0001')), 'tcp');
});

test('on a port declared HTTP, what is not TLS or HTTP/2 is HTTP/1.x (its parser answers what it cannot read)', (t) => {
  t.is(classify(Buffer.from([0x00, 0x01, 0x02]), true), 'http1');
  t.is(classify(Buffer.from('get / HTTP/1.1\r\n'), true), 'http1');
  t.is(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), true), 'http2');
  t.is(classify(Buffer.from('P'), true), 'more', 'POST or the HTTP/2 preface');
  t.is(classify(Buffer.from('PO'), true), 'http1');
  t.is(classify(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x02]), Buffer.alloc(2)]), true), 'tls', 'TLS is still passed through');
});

test('detection keeps no empty lines: a stream of them holds nothing, and the request after them is handed over alone', async (t) => {
  const socket = new PassThrough();
  const got = new Promise<[string, Buffer | null]>((resolve) => detect(socket as unknown as Socket, { timeoutMs: 100, declaredHttpIdleMs: 5000 }, (p, initial) => resolve([p, initial])));
  for (let i = 0; i < 64; i++) socket.write(Buffer.alloc(16_384, '\r\n'));
  socket.write('GET / HTTP/1.1\r\n');
  const [proto, initial] = await got;
  t.is(proto, 'http1');
  t.is(initial?.toString(), 'GET / HTTP/1.1\r\n');
});
