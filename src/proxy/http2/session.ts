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
import { type ClientHttp2Stream, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream, constants, createServer } from 'node:http2';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ProxyCore } from '../core.ts';
import { type Head, normalizeTarget } from '../http1/parse.ts';
import { newRequestId } from '../http1/request-id.ts';
import { type InboundDial, inboundRoute, route } from '../route.ts';
import { peerOf } from '../routing/select.ts';
import { backoffMs, retriableStatus } from '../routing/policy.ts';
import { recordExchange } from '../telemetry/exchange.ts';
import type { Peer } from '../telemetry/metrics.ts';

/** Request bodies up to this size are kept for a retry (as on HTTP/1.1). */
const REPLAY_LIMIT = 64 * 1024;
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
  const id = typeof h['x-request-id'] === 'string' ? h['x-request-id'] : '';
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
    requestId: id || newRequestId(),
    idGenerated: !id,
    raw: null,
    plain: false,
  };
}

export interface H2Context {
  core: ProxyCore;
  origDst: { address: string; port: number } | null;
  service: string | null;
  source: Peer | null;
  /** An inbound listener's: streams go to the application in the pod, reached with dial. */
  inbound?: { workload: Peer; dial: InboundDial };
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
  const routeOf = () => (ctx.inbound && ctx.origDst ? inboundRoute(core.table, ctx.origDst, head, ctx.inbound) : route(core.table, ctx.origDst, ctx.service, head, core, ctx.source, peerIp));
  const target = routeOf();
  let status = 0;
  let grpcStatus: string | undefined;
  let flags = '-';
  let reqBytes = 0;
  let resBytes = 0;
  let recorded = false;
  const record = () => {
    if (recorded) return;
    recorded = true;
    recordExchange(core, { head, protocol: 'HTTP/2', grpc, ...(grpcStatus !== undefined ? { grpcStatus } : {}), target, source: ctx.inbound ? peerOf(core.table, peerIp) : ctx.source, status, flags, durationMs: performance.now() - start, requestBytes: reqBytes, responseBytes: resBytes, ...(ctx.inbound ? { reporter: 'destination' as const } : {}) });
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
  if (svc) {
    const live = svc.live;
    live.active++;
    down.once('close', () => live.active--);
  }
  const retry = target.rule?.retry !== undefined ? target.rule.retry : (svc?.policy.retry ?? null);

  // The request body is forwarded as it comes and kept (up to REPLAY_LIMIT) for a retry.
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let replayable = true;
  let downEnded = false;
  let up: ClientHttp2Stream | null = null;
  let upEnded = false;
  let attempt = 1;
  let inRetry = false;
  let endAttempt = () => {};
  down.on('data', (c: Buffer) => {
    reqBytes += c.length;
    if (replayable) {
      keptBytes += c.length;
      if (keptBytes > REPLAY_LIMIT) {
        replayable = false;
        kept.length = 0;
      } else kept.push(c);
    }
    const to = up;
    if (to && !to.write(c)) {
      down.pause();
      // Only this stream's drain resumes reading; switching streams (a retry) resumes it too.
      to.once('drain', () => up === to && down.resume());
    }
  });
  down.on('end', () => {
    downEnded = true;
    up?.end();
  });

  /** Another attempt, when the policy, the attempts left and the retry budget allow it. */
  const mayRetry = (kind: 'connect' | 'reset' | 'status'): boolean => {
    if (!retry || !replayable || attempt > retry.attempts || down.destroyed || down.headersSent) return false;
    if (kind === 'connect' && !retry.onConnectFailure) return false;
    if (kind === 'reset' && !retry.onReset && !retry.onConnectFailure) return false;
    if (svc && !inRetry) {
      const allowed = Math.max(svc.policy.budgetMinRetries, Math.floor((svc.live.active * svc.policy.budgetPercent) / 100), 0);
      if (svc.live.retries >= Math.min(allowed, svc.policy.limits.maxRetries)) {
        core.metrics.retryBudgetExhausted.inc();
        return false;
      }
      const live = svc.live;
      live.retries++;
      inRetry = true;
      down.once('close', () => live.retries--);
    }
    const n = attempt++;
    core.metrics.retries.inc();
    // Until the next attempt starts, body bytes are only kept (the abandoned stream takes no more).
    up = null;
    setTimeout(() => {
      if (down.destroyed || down.closed) return;
      const again = routeOf();
      if (again.kind === 'local') return local(again.status, again.body, again.flags, 14);
      send(again);
    }, backoffMs(retry, n));
    return true;
  };

  // A deadline from the client (grpc-timeout) or from the route, whichever is sooner.
  const routeTimeout = target.rule?.timeoutMs ?? target.service?.policy.requestTimeoutMs;
  // Clamped to what setTimeout can wait (2^31-1 ms); a longer wait would fire at once.
  const deadline = Math.min(grpcTimeoutMs(headers['grpc-timeout'] as string | undefined) ?? Infinity, routeTimeout ?? Infinity, 2_147_483_647);
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(deadline)) {
    timer = setTimeout(() => {
      upEnded = true; // given up on: its closing is not news
      up?.close(constants.NGHTTP2_CANCEL);
      if (!down.headersSent) local(504, 'deadline exceeded', 'UT', 4);
      else down.close(constants.NGHTTP2_CANCEL);
    }, deadline);
    timer.unref();
  }
  down.on('close', () => {
    clearTimeout(timer);
    endAttempt();
    if (up && !up.closed) up.close(constants.NGHTTP2_CANCEL);
  });

  let pendingTrailers: Record<string, string | string[]> | null = null;
  down.on('wantTrailers', () => {
    // No trailers came: an empty trailer block still ends the stream cleanly (close() would reset it).
    down.sendTrailers(pendingTrailers ?? {});
  });

  /** One attempt: a stream on the pooled session to tgt's endpoint, the kept body first. */
  const send = (tgt: typeof target & { kind: 'upstream' }): void => {
    const ep = tgt.endpoint;
    // This attempt's own service: a retry may land on another one of a split.
    const svc = tgt.service;
    if (svc && ep) core.balancer.begin(svc, ep);
    let ended = false;
    endAttempt = () => {
      if (ended) return;
      ended = true;
      if (svc && ep) core.balancer.end(svc, ep);
    };
    const out: Record<string, string | string[]> = {
      [HTTP2_HEADER_METHOD]: head.method,
      [HTTP2_HEADER_PATH]: tgt.path ?? head.target,
      [HTTP2_HEADER_AUTHORITY]: tgt.host ?? head.host ?? `${tgt.address}:${tgt.port}`,
    };
    for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && !HOP.has(k) && v !== undefined) out[k] = v as string | string[];
    if (headers.te === 'trailers') out.te = 'trailers';
    if (head.idGenerated) out['x-request-id'] = head.requestId!;
    if (!headers['x-forwarded-for']) out['x-forwarded-for'] = peerIp;

    const inbound = tgt.inbound;
    // Inbound sessions are made inside the pod and kept apart from outbound ones to the same address.
    const idle = svc?.policy.poolIdleTimeoutMs;
    const session = inbound ? core.h2.session(tgt.address, tgt.port, { key: `inbound/${tgt.address}:${tgt.port}`, connect: () => inbound.dial(tgt.address, tgt.port) }, idle) : core.h2.session(tgt.address, tgt.port, undefined, idle);
    const mine = session.request(out, { endStream: false });
    up = mine;
    upEnded = false;
    for (const c of kept) mine.write(c);
    if (downEnded) mine.end();
    else down.resume();
    const current = () => up === mine;
    /** This attempt is over without an answer: retry it, or tell the client. */
    const failed = (err?: Error) => {
      if (!current() || down.destroyed || down.closed || upEnded) return;
      upEnded = true;
      if (down.headersSent) return void down.close(constants.NGHTTP2_INTERNAL_ERROR);
      if (svc && ep) core.balancer.report(svc, svc.endpoints, ep, 0);
      endAttempt();
      // A stream on a session that never connected is cancelled, the connect error as its cause.
      const e = err as { code?: string; cause?: { code?: string } } | undefined;
      const connectFailure = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT/.test(`${e?.code ?? ''} ${e?.cause?.code ?? ''}`);
      if (mayRetry(connectFailure ? 'connect' : 'reset')) return;
      local(connectFailure ? 503 : 502, connectFailure ? 'upstream connect error' : 'upstream reset', connectFailure ? 'UF' : 'UC');
    };
    // The upstream stream going away without a proper end (an error, or a reset that
    // node reports only as 'close') must not leave the client waiting.
    mine.on('error', failed);
    mine.on('close', () => failed());
    mine.on('response', (res, resFlags) => {
      if (!current()) return;
      const code = Number(res[HTTP2_HEADER_STATUS]);
      if (svc && ep) core.balancer.report(svc, svc.endpoints, ep, code);
      if (retry && retriableStatus(retry, code) && attempt <= retry.attempts) {
        // Not forwarded if another attempt is allowed: this answer is replaced by the next one's.
        const was = mine;
        if (mayRetry('status')) {
          upEnded = true;
          endAttempt();
          was.close(constants.NGHTTP2_CANCEL);
          return;
        }
      }
      status = code;
      // Forwarded: no retry from here, so what was kept for one can go (streams may run long).
      replayable = false;
      kept.length = 0;
      if (res['grpc-status'] !== undefined) grpcStatus = String(res['grpc-status']);
      const back: Record<string, string | string[] | number> = { [HTTP2_HEADER_STATUS]: status };
      for (const [k, v] of Object.entries(res)) if (!k.startsWith(':') && !HOP.has(k) && v !== undefined) back[k] = v as string | string[];
      if (down.destroyed) return;
      // A trailers-only answer (gRPC errors) ends with its headers; the request side is done too.
      if (resFlags & constants.NGHTTP2_FLAG_END_STREAM) {
        upEnded = true;
        down.respond(back, { endStream: true });
        return;
      }
      // Trailers, when they come, are sent after the data: the response waits for them.
      down.respond(back, { waitForTrailers: true, endStream: false });
    });
    mine.on('trailers', (trailers) => {
      if (!current()) return;
      if (trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
      const t: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(trailers)) if (!k.startsWith(':') && v !== undefined) t[k] = v as string | string[];
      pendingTrailers = t;
    });
    mine.on('data', (c: Buffer) => {
      if (!current() || !down.headersSent) return;
      resBytes += c.length;
      if (!down.write(c)) {
        mine.pause();
        down.once('drain', () => mine.resume());
      }
    });
    mine.on('end', () => {
      if (!current() || upEnded) return;
      upEnded = true;
      clearTimeout(timer);
      if (!down.destroyed) down.end();
    });
  };
  send(target);
}
