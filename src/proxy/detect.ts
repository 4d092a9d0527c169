// SPDX-License-Identifier: Apache-2.0
/**
 * Protocol detection on a connection's first bytes: HTTP/1.x, HTTP/2 prior
 * knowledge, TLS (ClientHello), or opaque TCP. A server-first protocol sends
 * nothing: after a short wait the connection is treated as TCP.
 */
import type { Socket } from 'node:net';

export type Detected = 'http1' | 'http2' | 'tls' | 'tcp';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const METHOD_CHARS = /^[A-Z]{3,10} /;

export function classify(first: Buffer): Detected | 'more' {
  if (first.length === 0) return 'more';
  if (first[0] === 0x16) {
    if (first.length < 3) return 'more';
    if (first[1] !== 0x03) return 'tcp';
    // The whole first record (the ClientHello) before deciding, so its SNI can be read even when it came in pieces.
    if (first.length < 5) return 'more';
    const record = first.readUInt16BE(3);
    return record <= 16_384 && first.length < 5 + record ? 'more' : 'tls';
  }
  const n = Math.min(first.length, H2_PREFACE.length);
  if (first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return first.length >= H2_PREFACE.length ? 'http2' : 'more';
  const text = first.toString('latin1', 0, Math.min(first.length, 12));
  if (METHOD_CHARS.test(text)) return 'http1';
  if (/^[A-Z]{1,10}$/.test(text) && first.length < 12) return 'more';
  return 'tcp';
}

/**
 * Waits for enough bytes to decide (or the timeout); hands over what was
 * read. A client that leaves during detection is let go: nothing upstream is
 * opened for it.
 */
export function detect(socket: Socket, timeoutMs: number, cb: (proto: Detected, initial: Buffer | null) => void): void {
  let buf: Buffer | null = null;
  let decided = false;
  const gone = () => {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    socket.destroy();
  };
  const decide = (p: Detected) => {
    if (decided) return;
    decided = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', gone);
    socket.off('close', gone);
    socket.pause();
    cb(p, buf);
  };
  socket.once('end', gone);
  socket.once('close', gone);
  const onData = (c: Buffer) => {
    buf = buf ? Buffer.concat([buf, c]) : c;
    const r = classify(buf);
    if (r !== 'more') decide(r);
  };
  const timer = setTimeout(() => decide('tcp'), timeoutMs);
  socket.on('data', onData);
}
