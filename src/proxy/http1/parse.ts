// SPDX-License-Identifier: Apache-2.0
/**
 * A strict HTTP/1.1 head parser over raw bytes (RFC 9112). Strict where
 * leniency lets one request be read as two (request smuggling): only CRLF
 * line ends, no whitespace before a colon, no obsolete line folding, no
 * control characters, one Content-Length (or identical repeats), never both
 * Content-Length and Transfer-Encoding, Transfer-Encoding only "chunked".
 *
 * Hand-written rather than Node's http parser: the proxy forwards bytes it
 * has not copied, and the per-request objects of the http module cost most of
 * its throughput (see shared/BENCHMARKING.md).
 */

import { latin1 } from './latin1.ts';

export class HttpParseError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface Head {
  /** Request: method; response: '' */
  method: string;
  /**
   * Request: request-target. Response: the reason phrase of a 1xx or a head
   * that is not plain; '' otherwise (reasonPhrase makes it when needed).
   */
  target: string;
  /** Response status (0 for requests). */
  status: number;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** Flat [name, value, name, value, ...] as received (names keep their case). */
  headers: string[];
  /** -1 when there is none. */
  contentLength: number;
  chunked: boolean;
  /** The connection must close after this message. */
  close: boolean;
  /** Upgrade token (lower case) when Connection: upgrade asks for one. */
  upgrade: string | null;
  expectContinue: boolean;
  host: string | null;
  /** Bytes taken by the head, CRLFCRLF included. */
  size: number;
  /** x-request-id as received (requests), or the one the proxy made up (see idGenerated), or null. */
  requestId: string | null;
  /** requestId was made up by the proxy (none came): it is added to the head sent upstream. */
  idGenerated: boolean;
  /**
   * The head's bytes as received (HTTP/1 only): while `plain` holds, they can
   * be forwarded as they are instead of being written out again.
   */
  raw: Buffer | null;
  /**
   * Every header line may be forwarded unchanged: HTTP/1.1, no hop-by-hop
   * header (Connection and what it names, Keep-Alive, TE, Upgrade, ...), no
   * X-Forwarded-For, one Content-Length or one "Transfer-Encoding: chunked",
   * and a target and host that normalizeTarget left alone.
   */
  plain: boolean;
}

const CR = 13;
const LF = 10;
/** RFC 9110 tchar: 1 for the bytes a header name (a token) may hold. */
export const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TOKEN[c] = 1;
for (let c = 65; c <= 90; c++) TOKEN[c] = 1;
for (let c = 97; c <= 122; c++) TOKEN[c] = 1;

/** Field value bytes: visible ASCII, obs-text, SP and HTAB. */
function validValueByte(c: number): boolean {
  return c === 9 || (c >= 32 && c !== 127);
}

/**
 * Finds the end of a head in buf (from `from`, to resume a scan); returns the
 * index just past CRLFCRLF, or -1.
 */
export function headEnd(buf: Buffer, from = 0): number {
  // A byte loop: cheaper than Buffer#indexOf with a string for heads of a few hundred bytes.
  const n = buf.length;
  for (let i = Math.max(3, from); i < n; i++) {
    if (buf[i] === LF && buf[i - 2] === LF && buf[i - 1] === CR && buf[i - 3] === CR) return i + 1;
  }
  return -1;
}

/** buf[start, start + lower.length) equals lower, ASCII case-insensitively (lower is lower case). */
function nameIs(buf: Buffer, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((buf[start + i]! | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** Parses a decimal Content-Length of 1 to 15 digits, or -1. */
function decimal(buf: Buffer, from: number, to: number): number {
  if (to <= from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * A head parsed from bytes. Header names and values become strings only when
 * something asks for them (routing on a header, authorization, a rewrite):
 * most heads are forwarded as received, and a string per name and value was
 * the largest cost of a proxied request after the system calls.
 */
class Http1Head implements Head {
  method = '';
  target = '';
  status = 0;
  minor = 1;
  contentLength = -1;
  chunked = false;
  close = false;
  upgrade: string | null = null;
  expectContinue = false;
  host: string | null = null;
  requestId: string | null = null;
  idGenerated = false;
  plain = true;
  readonly size: number;
  readonly raw: Buffer;
  /** [nameStart, nameEnd, valueStart, valueEnd] per header line, into raw. */
  readonly spans: number[] = [];
  private list: string[] | null = null;

  constructor(raw: Buffer) {
    this.raw = raw;
    this.size = raw.length;
  }

  get headers(): string[] {
    if (this.list === null) {
      const s = this.spans;
      const list: string[] = new Array(s.length / 2);
      for (let i = 0; i < s.length; i += 2) list[i / 2] = latin1(this.raw, s[i]!, s[i + 1]!);
      this.list = list;
    }
    return this.list;
  }
}

/**
 * Parses a complete head (buf[0, end)). kind 'request' checks what a server
 * must; 'response' what a client must. Header names are compared as bytes,
 * and only the values that matter for routing (Host, x-request-id) become
 * strings here: this runs twice per proxied request.
 */
export function parseHead(buf: Buffer, end: number, kind: 'request' | 'response'): Head {
  const raw = buf.length === end ? buf : buf.subarray(0, end);
  const head = new Http1Head(raw);
  // The start line.
  let eol = 0;
  while (eol < end && raw[eol] !== LF) eol++;
  if (eol < 1 || eol >= end || raw[eol - 1] !== CR) throw new HttpParseError(400, 'the start line must end with CRLF');
  if (kind === 'request') parseRequestLine(raw, eol - 1, head);
  else parseStatusLine(raw, eol - 1, head);

  let connectionTokens = '';
  let sawHost = 0;
  let sawLength = 0;
  let te: string | null = null;
  let plain = head.minor === 1;
  const spans = head.spans;
  let pos = eol + 1;
  while (pos < end - 2) {
    const first = raw[pos]!;
    if (first === 32 || first === 9) throw new HttpParseError(400, 'obsolete header line folding is not accepted');
    // name
    let i = pos;
    while (TOKEN[raw[i]!] === 1) i++;
    if (i === pos || raw[i] !== 58 /* : */) throw new HttpParseError(400, 'a header name must be a token followed directly by ":"');
    // value: one pass finds its end (CRLF) and checks every byte on the way
    let vs = i + 1;
    while (raw[vs] === 32 || raw[vs] === 9) vs++;
    let cr = vs;
    for (let c = raw[cr]!; c !== CR; c = raw[++cr]!) {
      if (c === LF) throw new HttpParseError(400, 'header lines must end with CRLF');
      if (!validValueByte(c)) throw new HttpParseError(400, `header ${latin1(raw, pos, i)} has a control character`);
    }
    if (cr + 1 >= end || raw[cr + 1] !== LF) throw new HttpParseError(400, `header ${latin1(raw, pos, i)} has a control character`);
    eol = cr + 1;
    let ve = cr;
    while (ve > vs && (raw[ve - 1] === 32 || raw[ve - 1] === 9)) ve--;
    spans.push(pos, i, vs, ve);
    switch (i - pos) {
      case 2:
        if (nameIs(raw, pos, 'te')) plain = false;
        break;
      case 4:
        if (nameIs(raw, pos, 'host')) {
          sawHost++;
          head.host = latin1(raw, vs, ve);
        }
        break;
      case 6:
        if (nameIs(raw, pos, 'expect') && latin1(raw, vs, ve).toLowerCase() === '100-continue') head.expectContinue = true;
        break;
      case 7:
        if (nameIs(raw, pos, 'upgrade')) {
          head.upgrade = latin1(raw, vs, ve).toLowerCase();
          plain = false;
        }
        break;
      case 10:
        if (nameIs(raw, pos, 'connection')) {
          connectionTokens += `,${latin1(raw, vs, ve).toLowerCase()}`;
          plain = false;
        } else if (nameIs(raw, pos, 'keep-alive')) plain = false;
        break;
      case 12:
        if (kind === 'request' && nameIs(raw, pos, 'x-request-id') && head.requestId === null) head.requestId = latin1(raw, vs, ve);
        break;
      case 14:
        if (nameIs(raw, pos, 'content-length')) {
          const n = decimal(raw, vs, ve);
          if (n < 0) throw new HttpParseError(400, 'Content-Length must be a decimal number');
          if (head.contentLength !== -1 && head.contentLength !== n) throw new HttpParseError(400, 'differing Content-Length headers');
          head.contentLength = n;
          // Identical repeats are accepted, but forwarded as one.
          if (++sawLength > 1) plain = false;
        }
        break;
      case 15:
        if (nameIs(raw, pos, 'x-forwarded-for')) plain = false;
        break;
      case 16:
        if (nameIs(raw, pos, 'proxy-connection')) plain = false;
        break;
      case 17:
        if (nameIs(raw, pos, 'transfer-encoding')) {
          const v = latin1(raw, vs, ve).toLowerCase();
          if (te !== null || v !== 'chunked') plain = false;
          te = te === null ? v : `${te},${v}`;
        }
        break;
    }
    pos = eol + 1;
  }

  if (te !== null) {
    if (head.contentLength !== -1) throw new HttpParseError(400, 'both Content-Length and Transfer-Encoding');
    if (te.trim() !== 'chunked') throw new HttpParseError(kind === 'request' ? 501 : 502, `Transfer-Encoding "${te}" is not supported (only chunked)`);
    if (head.minor === 0 && kind === 'request') throw new HttpParseError(400, 'Transfer-Encoding in an HTTP/1.0 request');
    head.chunked = true;
  }
  if (connectionTokens) {
    const tokens = connectionTokens.split(',').map((t) => t.trim());
    head.close = head.minor === 0 ? !tokens.includes('keep-alive') : tokens.includes('close');
    // HTTP/1.0 has no Upgrade (RFC 9110 7.8: a 1.0 request's is ignored), so it never becomes a tunnel.
    if (head.upgrade !== null && (!tokens.includes('upgrade') || head.minor === 0)) head.upgrade = null;
  } else {
    head.close = head.minor === 0;
    head.upgrade = null;
  }
  // Two Hosts are refused whatever the version (RFC 9112 3.2); only HTTP/1.0 may have none.
  if (kind === 'request' && (sawHost > 1 || (sawHost === 0 && head.minor === 1))) throw new HttpParseError(400, sawHost === 0 ? 'HTTP/1.1 request without Host' : 'more than one Host header');
  head.plain = plain;
  // A plain response's head usually goes as received: its reason phrase is made when asked for (reasonPhrase).
  if (kind === 'response' && (!plain || head.status < 200)) head.target = reasonOf(raw);
  return head;
}

/** "HTTP/1.x NNN reason": the reason, or ''. */
function reasonOf(raw: Buffer): string {
  const cr = raw.indexOf(CR);
  return cr > 13 ? latin1(raw, 13, cr) : '';
}

/** A response's reason phrase, for writing its head out again (a plain head's is made only now). */
export function reasonPhrase(res: Head): string {
  return res.target !== '' || res.raw === null ? res.target : reasonOf(res.raw);
}

/** Bytes outside a request target: whitespace (with Latin-1 NBSP) and controls. */
function badTargetByte(c: number): boolean {
  return c <= 32 || c === 127 || c === 0xa0;
}

/** buf[at, at + 8) is "HTTP/1.d"; returns d, or -1. */
function httpVersion(buf: Buffer, at: number): number {
  if (buf[at] !== 72 || buf[at + 1] !== 84 || buf[at + 2] !== 84 || buf[at + 3] !== 80 || buf[at + 4] !== 47 || buf[at + 5] !== 49 || buf[at + 6] !== 46) return -1;
  const d = buf[at + 7]! - 48;
  return d === 0 || d === 1 ? d : -1;
}

/** The request line, buf[0, cr): checked and split as bytes, so only the target becomes a new string. */
function parseRequestLine(buf: Buffer, cr: number, head: Http1Head): void {
  let sp1 = 0;
  while (sp1 < cr && buf[sp1] !== 32) sp1++;
  let sp2 = cr - 1;
  while (sp2 > sp1 && buf[sp2] !== 32) sp2--;
  if (sp1 === 0 || sp1 >= cr || sp2 === sp1) throw new HttpParseError(400, 'malformed request line');
  for (let i = 0; i < sp1; i++) if (TOKEN[buf[i]!] !== 1) throw new HttpParseError(400, 'malformed method');
  if (sp2 === sp1 + 1) throw new HttpParseError(400, 'malformed request target');
  for (let i = sp1 + 1; i < sp2; i++) if (badTargetByte(buf[i]!)) throw new HttpParseError(400, 'malformed request target');
  const minor = cr - sp2 === 9 ? httpVersion(buf, sp2 + 1) : -1;
  if (minor < 0) {
    const version = latin1(buf, sp2 + 1, cr);
    throw new HttpParseError(version.startsWith('HTTP/') ? 505 : 400, `unsupported version ${JSON.stringify(version.slice(0, 16))}`);
  }
  head.minor = minor;
  head.method = sp1 === 3 && buf[0] === 71 && buf[1] === 69 && buf[2] === 84 ? 'GET' : latin1(buf, 0, sp1);
  head.target = latin1(buf, sp1 + 1, sp2);
}

/** "HTTP/1.x NNN[ reason]", buf[0, cr), checked as bytes: this runs once per response. */
function parseStatusLine(buf: Buffer, cr: number, head: Http1Head): void {
  const d = (i: number) => buf[i]! - 48;
  const minor = cr >= 12 ? httpVersion(buf, 0) : -1;
  const ok = minor >= 0 && buf[8] === 32 && d(9) >= 1 && d(9) <= 5 && d(10) >= 0 && d(10) <= 9 && d(11) >= 0 && d(11) <= 9 && (cr === 12 || buf[12] === 32);
  if (!ok) throw new HttpParseError(502, 'malformed upstream status line');
  head.minor = minor;
  head.status = d(9) * 100 + d(10) * 10 + d(11);
}

/**
 * Puts a request target in the form routing, authorization and the upstream
 * all see alike: absolute-form ("http://host/x") becomes origin-form with its
 * authority as the host (RFC 9112 3.2.2), and dot segments ("/a/../admin",
 * also percent-encoded) are resolved, so a policy on "/admin" cannot be
 * walked around. A backslash in the path becomes a slash, as in Istio's
 * default normalization (BASE) and in the URL parsers of browsers and of
 * many servers: "/admin\x" must not pass a rule on "/admin/" and then be
 * served as "/admin/x". One in the query is left alone.
 */
export function normalizeTarget(head: Head): void {
  const t = head.target;
  if (t === '*') {
    if (head.method !== 'OPTIONS') throw new HttpParseError(400, 'the asterisk target is for OPTIONS only');
    return;
  }
  if (t.charCodeAt(0) !== 47 /* / */) {
    if (!/^https?:\/\//i.test(t)) throw new HttpParseError(400, 'the request target must be a path or an absolute URL');
    let u: URL;
    try {
      u = new URL(t);
    } catch {
      throw new HttpParseError(400, 'malformed absolute request target');
    }
    head.host = u.host;
    head.target = u.pathname + u.search;
    head.plain = false;
    return;
  }
  const bs = t.indexOf('\\');
  if (t.includes('/.') || t.includes('%2e') || t.includes('%2E') || (bs >= 0 && !t.slice(0, bs).includes('?'))) {
    // The WHATWG URL parser resolves dot segments and, for http, reads a backslash in the path as a slash.
    const u = new URL(t, 'http://h');
    head.target = u.pathname + u.search;
    head.plain = false;
  }
}

/** The value of a header (first occurrence), by lower-case name. */
export function header(head: Head, lower: string): string | undefined {
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i]!.length === lower.length && h[i]!.toLowerCase() === lower) return h[i + 1];
  return undefined;
}

/** Hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1), plus those named in Connection. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'content-length', 'host', 'x-forwarded-for']);

/**
 * The headers to forward, as "Name: value\r\n" lines: hop-by-hop ones dropped
 * (framing, Host and X-Forwarded-For are written by the caller), and
 * `alsoDrop` (lower case) when given.
 */
export function forwardHeaders(head: Head, alsoDrop?: string): string {
  const h = head.headers;
  // Every Connection line counts: several make one list (RFC 9110 5.3), and each header it names is hop-by-hop.
  let named: string[] | null = null;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.length === 10 && h[i]!.toLowerCase() === 'connection') (named ??= []).push(...h[i + 1]!.toLowerCase().split(',').map((t) => t.trim()));
  }
  let out = '';
  for (let i = 0; i < h.length; i += 2) {
    const lower = h[i]!.toLowerCase();
    if (HOP.has(lower) || lower === alsoDrop || (named !== null && named.includes(lower))) continue;
    out += `${h[i]}: ${h[i + 1]}\r\n`;
  }
  return out;
}
