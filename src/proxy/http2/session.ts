// SPDX-License-Identifier: Apache-2.0
/**
 * HTTP/2 (prior knowledge, h2c) and gRPC: each downstream stream is routed
 * like an HTTP/1.1 request and forwarded as a stream of a pooled upstream
 * h2c session. Trailers (grpc-status, grpc-message) pass through; a
 * grpc-timeout deadline is enforced here too, answered DEADLINE_EXCEEDED.
 *
 * Built on node:http2 (nghttp2): HTTP/2's framing, flow control and HPACK
 * are not worth writing again.
 */
import { type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream, constants, createServer } from 'node:http2';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ProxyCore } from '../core.ts';
import { type Head, normalizeTarget } from '../http1/parse.ts';
import { route } from '../route.ts';
import { recordExchange } from '../telemetry/exchange.ts';
import type { Peer } from '../telemetry/metrics.ts';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings']);
const { HTTP2_HEADER_STATUS, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_AUTHORITY } = constants;

/** grpc-timeout ("100m", "5S", ...) in milliseconds (gRPC over HTTP/2, "Timeout"). */
export function grpcTimeoutMs(v: string | undefined): number | undefined {
  const m = v ? /^(\d{1,8})([HMSmun])$/.exec(v) : null;
  if (!m) return undefined;
  const n = Number(m[1]);
  return { H: n * 3_600_000, M: n * 60_000, S: n * 1000, m: n, u: n / 1000, n: n / 1e6 }[m[2] as 'H']!;
}

/** The routing layer speaks Head: an h2 request's pseudo-headers map onto it. */
function headOf(h: IncomingHttpHeaders): Head {
  const flat: string[] = [];
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    flat.push(k, Array.isArray(v) ? v.join(', ') : v);
  }
  return {
    method: String(h[HTTP2_HEADER_METHOD] ?? 'GET'),
    target: String(h[HTTP2_HEADER_PATH] ?? '/'),
    status: 0,
    minor: 1,
    headers: flat,
    contentLength: -1,
    chunked: false,
    close: false,
    upgrade: null,
    expectContinue: false,
    host: h[HTTP2_HEADER_AUTHORITY] ? String(h[HTTP2_HEADER_AUTHORITY]) : null,
    size: 0,
  };
}

export interface H2Context {
  core: ProxyCore;
  origDst: { address: string; port: number } | null;
  service: string | null;
  source: Peer | null;
}

/** A server that owns the h2 side of connections handed to it after detection. */
export function h2Server(): Http2Server {
  const server = createServer({ settings: { enablePush: false } });
  server.on('sessionError', () => {});
  return server;
}

/** Serves one detected h2c connection (initial holds the bytes detection read). */
export function serveH2(server: Http2Server, socket: Socket, initial: Buffer | null, ctx: H2Context): void {
  const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => forward(stream, headers, ctx, socket.remoteAddress ?? '');
  server.once('session', (session) => {
    session.on('stream', onStream);
    session.on('error', () => {});
  });
  // What detection read goes back into the socket's buffer; the session takes it from
  // there before it consumes the socket's handle itself (so no resume() here).
  if (initial) socket.unshift(initial);
  server.emit('connection', socket);
}

function forward(down: ServerHttp2Stream, headers: IncomingHttpHeaders, ctx: H2Context, peerIp: string): void {
  const start = performance.now();
  const head = headOf(headers);
  const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
  const core = ctx.core;
  try {
    normalizeTarget(head);
  } catch {
    down.respond({ [HTTP2_HEADER_STATUS]: 400 }, { endStream: true });
    return;
  }
  const target = route(core.table, ctx.origDst, ctx.service, head, core, ctx.source, peerIp);
  let status = 0;
  let grpcStatus: string | undefined;
  let flags = '-';
  let reqBytes = 0;
  let resBytes = 0;
  let recorded = false;
  const record = () => {
    if (recorded) return;
    recorded = true;
    recordExchange(core, { head, protocol: 'HTTP/2', grpc, ...(grpcStatus !== undefined ? { grpcStatus } : {}), target, source: ctx.source, status, flags, durationMs: performance.now() - start, requestBytes: reqBytes, responseBytes: resBytes });
  };
  down.on('error', () => {});
  down.on('close', record);

  const local = (code: number, body: string, f: string, grpcCode?: number) => {
    status = code;
    flags = f;
    if (down.headersSent || down.destroyed) return;
    if (grpc) {
      // gRPC errors are trailers-only responses with HTTP 200.
      grpcStatus = String(grpcCode ?? 14);
      status = 200;
      down.respond({ [HTTP2_HEADER_STATUS]: 200, 'content-type': 'application/grpc', 'grpc-status': grpcStatus, 'grpc-message': encodeURIComponent(body.trim()) }, { endStream: true });
      return;
    }
    down.respond({ [HTTP2_HEADER_STATUS]: code, 'content-type': 'text/plain' });
    down.end(body);
  };

  if (target.kind === 'local') return local(target.status, target.body, target.flags, target.status === 403 ? 7 : target.status === 429 ? 8 : 14);

  // The same circuit breaker and endpoint accounting as HTTP/1.1: one stream, one request.
  const svc = target.service;
  if (svc && svc.live.active >= svc.policy.limits.maxRequests) return local(503, 'upstream overflow (circuit breaker open)', 'UO', 14);
  if (svc && target.endpoint) {
    const live = svc.live;
    const ep = target.endpoint;
    live.active++;
    core.balancer.begin(svc, ep);
    down.once('close', () => {
      live.active--;
      core.balancer.end(svc, ep);
    });
  }

  const out: Record<string, string | string[]> = {
    [HTTP2_HEADER_METHOD]: head.method,
    [HTTP2_HEADER_PATH]: target.path ?? head.target,
    [HTTP2_HEADER_AUTHORITY]: target.host ?? head.host ?? `${target.address}:${target.port}`,
  };
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && !HOP.has(k) && v !== undefined) out[k] = v as string | string[];
  if (headers.te === 'trailers') out.te = 'trailers';
  if (!headers['x-request-id']) out['x-request-id'] = crypto.randomUUID();
  if (!headers['x-forwarded-for']) out['x-forwarded-for'] = peerIp;

  const session = core.h2.session(target.address, target.port);
  const up = session.request(out, { endStream: false });
  // The upstream stream going away without a proper end (an error, or a reset that
  // node reports only as 'close') must not leave the client waiting.
  const upstreamGone = () => {
    if (down.destroyed || down.closed || upEnded) return;
    if (!down.headersSent) {
      if (svc && target.endpoint) core.balancer.report(svc, svc.endpoints, target.endpoint, 0);
      local(502, 'upstream reset', 'UC');
    }
    else down.close(constants.NGHTTP2_INTERNAL_ERROR);
  };
  let upEnded = false;
  up.on('error', upstreamGone);
  up.on('close', upstreamGone);
  // A deadline from the client (grpc-timeout) or from the route, whichever is sooner.
  const routeTimeout = target.rule?.timeoutMs ?? target.service?.policy.requestTimeoutMs;
  // Clamped to what setTimeout can wait (2^31-1 ms); a longer wait would fire at once.
  const deadline = Math.min(grpcTimeoutMs(headers['grpc-timeout'] as string | undefined) ?? Infinity, routeTimeout ?? Infinity, 2_147_483_647);
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(deadline)) {
    timer = setTimeout(() => {
      upEnded = true; // given up on: its closing is not news
      up.close(constants.NGHTTP2_CANCEL);
      if (!down.headersSent) local(504, 'deadline exceeded', 'UT', 4);
      else down.close(constants.NGHTTP2_CANCEL);
    }, deadline);
    timer.unref();
  }
  down.on('close', () => {
    clearTimeout(timer);
    if (!up.closed) up.close(constants.NGHTTP2_CANCEL);
  });

  down.on('data', (c: Buffer) => {
    reqBytes += c.length;
  });
  down.pipe(up);
  up.on('response', (res, flags) => {
    status = Number(res[HTTP2_HEADER_STATUS]);
    if (svc && target.endpoint) core.balancer.report(svc, svc.endpoints, target.endpoint, status);
    if (res['grpc-status'] !== undefined) grpcStatus = String(res['grpc-status']);
    const back: Record<string, string | string[] | number> = { [HTTP2_HEADER_STATUS]: status };
    for (const [k, v] of Object.entries(res)) if (!k.startsWith(':') && !HOP.has(k) && v !== undefined) back[k] = v as string | string[];
    if (down.destroyed) return;
    // A trailers-only answer (gRPC errors) ends with its headers; the request side is done too.
    if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
      upEnded = true;
      down.unpipe(up);
      down.respond(back, { endStream: true });
      return;
    }
    // Trailers, when they come, are sent after the data: the response waits for them.
    down.respond(back, { waitForTrailers: true, endStream: false });
  });
  up.on('trailers', (trailers) => {
    if (trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
    const t: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(trailers)) if (!k.startsWith(':') && v !== undefined) t[k] = v as string | string[];
    pendingTrailers = t;
  });
  let pendingTrailers: Record<string, string | string[]> | null = null;
  down.on('wantTrailers', () => {
    // No trailers came: an empty trailer block still ends the stream cleanly (close() would reset it).
    down.sendTrailers(pendingTrailers ?? {});
  });
  up.on('data', (c: Buffer) => {
    resBytes += c.length;
    if (!down.write(c)) {
      up.pause();
      down.once('drain', () => up.resume());
    }
  });
  up.on('end', () => {
    upEnded = true;
    clearTimeout(timer);
    if (!down.destroyed) down.end();
  });
}
