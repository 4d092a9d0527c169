// SPDX-License-Identifier: Apache-2.0
/**
 * Protocol detection on a connection's first bytes: HTTP/1.x, HTTP/2 prior
 * knowledge, TLS (ClientHello), or opaque TCP. A server-first protocol sends
 * nothing: after a short wait the connection is treated as TCP, unless its
 * port is declared HTTP (then only the client's bytes decide, however late).
 */
import type { Socket } from 'node:net';

export type Detected = 'http1' | 'http2' | 'tls' | 'tcp';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** A request line's start: a method (any RFC 9110 token in capitals, e.g. M-SEARCH, VERSION-CONTROL) and a space. */
const METHOD = /^[A-Z][A-Z0-9_-]{1,23} /;
const METHOD_PREFIX = /^[A-Z][A-Z0-9_-]{0,23}$/;
/**
 * Once a client has sent part of a request line it is not a server-first
 * protocol: it gets this long to finish the method before it is taken for TCP.
 */
export const PARTIAL_WAIT_MS = 10_000;
/** The most detection holds: a whole TLS record (16 KiB and its header) decides long before. */
const MAX_HELD = 16_384 + 5;

/**
 * `declaredHttp`: the port is declared HTTP, so whatever is not TLS or
 * HTTP/2 prior knowledge is served as HTTP/1.x (the parser answers 400 to
 * what it cannot read), never passed on as opaque bytes.
 */
export function classify(first: Buffer, declaredHttp = false): Detected | 'more' {
  // Empty lines before a request line are allowed (RFC 9112 2.2); the HTTP/1 session drops them.
  const at = emptyLinesEnd(first);
  if (at === first.length) return 'more';
  if (at > 0) {
    // Only HTTP/1 may start so: TLS and the HTTP/2 preface begin at the first byte.
    if (declaredHttp) return 'http1';
    const rest = classify(first.subarray(at));
    return rest === 'http1' || rest === 'more' ? rest : 'tcp';
  }
  if (first[0] === 0x16) {
    if (first.length < 3) return 'more';
    if (first[1] !== 0x03) return declaredHttp ? 'http1' : 'tcp';
    // The whole first record (the ClientHello) before deciding, so its SNI can be read even when it came in pieces.
    if (first.length < 5) return 'more';
    const record = first.readUInt16BE(3);
    return record <= 16_384 && first.length < 5 + record ? 'more' : 'tls';
  }
  const n = Math.min(first.length, H2_PREFACE.length);
  if (first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return first.length >= H2_PREFACE.length ? 'http2' : 'more';
  if (declaredHttp) return 'http1';
  const text = first.toString('latin1', 0, Math.min(first.length, 25));
  if (METHOD.test(text)) return 'http1';
  if (METHOD_PREFIX.test(text)) return 'more';
  return 'tcp';
}

/** Where the CR and LF bytes at the start of buf end. */
function emptyLinesEnd(buf: Buffer): number {
  let at = 0;
  while (at < buf.length && (buf[at] === 13 || buf[at] === 10)) at++;
  return at;
}

export interface DetectOptions {
  /** How long a silent client is waited for before the connection is taken for a server-first protocol. */
  timeoutMs: number;
  /** The port is declared HTTP: no server-first fallback, and a client silent this long is closed instead. */
  declaredHttpIdleMs?: number;
}

/**
 * Waits for enough bytes to decide (or the timeout); hands over what was
 * read. A client that leaves during detection is let go: nothing upstream is
 * opened for it.
 */
export function detect(socket: Socket, options: DetectOptions, cb: (proto: Detected, initial: Buffer | null) => void): void {
  const declaredHttp = options.declaredHttpIdleMs !== undefined;
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
    // Empty lines before a request line are not kept (the HTTP/1 session would drop them): a stream of
    // them must not grow this buffer.
    const at = emptyLinesEnd(buf);
    if (at > 0) buf = at === buf.length ? null : buf.subarray(at);
    if (buf === null) return;
    const r = classify(buf, declaredHttp);
    if (r !== 'more') decide(r);
    // Whatever it is, it is not what can still be told apart by more bytes.
    else if (buf.length > MAX_HELD) decide(declaredHttp ? 'http1' : 'tcp');
  };
  // (onData never keeps an empty buffer: what it strips to nothing becomes null.)
  const silent = () => buf === null;
  const onTimeout = () => {
    if (declaredHttp) return gone();
    // Part of a request line came (a slow client): a server-first protocol sends nothing, so this one gets longer.
    if (!silent() && !partial) {
      partial = true;
      timer = setTimeout(onTimeout, PARTIAL_WAIT_MS);
      return;
    }
    if (partial) return decide('tcp');
    // Timers run before sockets are read in each turn of the event loop: after a stall (GC, a busy
    // loop) bytes that came in time may still be unread. One more turn reads them before deciding.
    setImmediate(() => {
      if (decided) return;
      if (silent()) decide('tcp');
      else onTimeout();
    });
  };
  let partial = false;
  let timer = setTimeout(onTimeout, declaredHttp ? options.declaredHttpIdleMs : options.timeoutMs);
  socket.on('data', onData);
}
