// SPDX-License-Identifier: Apache-2.0
/**
 * HTTP/2 (prior knowledge, h2c) and gRPC: each downstream stream is routed
 * like an HTTP/1.1 request and forwarded as a stream of a pooled upstream
 * h2c session, with the same route and cluster features (fault delays,
 * retries and per-try timeouts, connect timeouts, circuit breakers,
 * redirects, mirroring). Trailers (grpc-status, grpc-message) pass through; a
 * grpc-timeout deadline is enforced here too, answered DEADLINE_EXCEEDED.
 *
 * Built on node:http2 (nghttp2): HTTP/2's framing, flow control and HPACK
 * are not worth writing again.
 */
import { type ClientHttp2Stream, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream, constants, createServer } from 'node:http2';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ProxyCore } from '../core.ts';
import { type Head, normalizeTarget } from '../http1/parse.ts';
import { headerFields } from '../http1/local-reply.ts';
import { IDLE_TIMEOUT_MS } from '../http1/idle.ts';
import { newRequestId } from '../http1/request-id.ts';
import { type InboundDial, MAX_ADMISSION_ROUNDS, type Pending, RATE_LIMITED, RETRY_ADMITTED, type Target, inboundRoute, route } from '../route.ts';
import { peerOf } from '../routing/select.ts';
import { backoffMs, retriableStatus, retryBudgetAllows } from '../routing/policy.ts';
import { timerMs } from '../timer.ts';
import { roll } from '../policy/fault.ts';
import { recordExchange } from '../telemetry/exchange.ts';
import type { Peer } from '../telemetry/metrics.ts';
import { type Shadow, mirror } from './mirror.ts';
import { grpcStatusOfHttp } from './grpc-status.ts';

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
    // RFC 9113 8.3.1: a request may carry Host instead of :authority; then Host is the authority.
    host: h[HTTP2_HEADER_AUTHORITY] ? String(h[HTTP2_HEADER_AUTHORITY]) : h.host ? String(h.host) : null,
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

/** The h2 side of a listener's connections, and how long one of them may sit with no stream open. */
export type H2Server = Http2Server & { idleTimeoutMs: number };

/**
 * A server that owns the h2 side of connections handed to it after detection.
 * idleTimeoutMs: a client connection with no stream open this long is closed
 * (by default the HTTP/1.1 side's, so both protocols let clients idle alike).
 */
export function h2Server(idleTimeoutMs = IDLE_TIMEOUT_MS): H2Server {
  const server = createServer({ settings: { enablePush: false } });
  server.on('sessionError', () => {});
  return Object.assign(server, { idleTimeoutMs });
}

/** Serves one detected h2c connection (initial holds the bytes detection read). */
export function serveH2(server: H2Server, socket: Socket, initial: Buffer | null, ctx: H2Context): void {
  const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => forward(stream, headers, ctx, socket.remoteAddress ?? '');
  server.once('session', (session) => {
    // First: a stream must count as open before forward() can end it.
    closeWhenIdle(session, server.idleTimeoutMs);
    session.on('stream', onStream);
    session.on('error', () => {});
  });
  // What detection read goes back into the socket's buffer; the session takes it from
  // there before it consumes the socket's handle itself (so no resume() here).
  if (initial) socket.unshift(initial);
  server.emit('connection', socket);
}

/**
 * A client connection with no stream open for ms is closed gracefully: GOAWAY
 * (naming the last stream taken, so a client whose new stream crossed it
 * knows to send that again elsewhere), then the socket. node:http2 servers
 * have no timeout by default: without this an idle h2c client would keep its
 * connection, and the proxy's memory for it, forever, where an idle HTTP/1.1
 * client is let go (see http1/idle.ts). As there, time spent in a request
 * does not count: a quiet stream still open (a long gRPC call) keeps the
 * connection. One timer per connection, restarted when its last open stream
 * ends, not on every frame as session.setTimeout would be.
 */
function closeWhenIdle(session: ServerHttp2Session, ms: number): void {
  let open = 0;
  // A stream opened since it was armed keeps the connection; that stream's end arms it again.
  const timer = setTimeout(() => open === 0 && session.close(), timerMs(ms));
  timer.unref();
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++;
    stream.once('close', () => {
      if (--open === 0 && !session.closed && !session.destroyed) timer.refresh();
    });
  });
  session.once('close', () => clearTimeout(timer));
}

/** What an upstream h2 request carries: the client's headers less hop-by-hop ones, and what the proxy adds. */
function upstreamHeaders(head: Head, headers: IncomingHttpHeaders, tgt: { address: string; port: number; host?: string | undefined; path?: string | undefined }, peerIp: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {
    [HTTP2_HEADER_METHOD]: head.method,
    [HTTP2_HEADER_PATH]: tgt.path ?? head.target,
    [HTTP2_HEADER_AUTHORITY]: tgt.host ?? head.host ?? `${tgt.address}:${tgt.port}`,
  };
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && !HOP.has(k) && v !== undefined) out[k] = v as string | string[];
  if (headers.te === 'trailers') out.te = 'trailers';
  if (head.idGenerated) out['x-request-id'] = head.requestId!;
  // Appended to, as on HTTP/1.1 (and in Envoy): the client does not get to say alone where it came from.
  const xff = headers['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${peerIp}` : peerIp;
  return out;
}

/**
 * One stream, routed and sent on. A stream waiting for the node's rate-limit
 * tokens (see node-limits.ts) comes back here when they come, with when it
 * started, the services that admitted it, and how many times it waited; its
 * body waits in the stream meanwhile (flow control holds the client back).
 */
function forward(down: ServerHttp2Stream, headers: IncomingHttpHeaders, ctx: H2Context, peerIp: string, start = performance.now(), admitted?: ReadonlySet<string>, round = 0): void {
  const head = headOf(headers);
  const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
  const core = ctx.core;
  try {
    normalizeTarget(head);
  } catch {
    down.respond({ [HTTP2_HEADER_STATUS]: 400 }, { endStream: true });
    return;
  }
  const routeOf = (already?: ReadonlySet<string>) => (ctx.inbound && ctx.origDst ? inboundRoute(core.table, ctx.origDst, head, ctx.inbound) : route(core.table, ctx.origDst, ctx.service, head, core, ctx.source, peerIp, already));
  const routed: Target | Pending = round >= MAX_ADMISSION_ROUNDS ? RATE_LIMITED : routeOf(admitted);
  if (routed.kind === 'pending') {
    if (round === 0) down.on('error', () => {});
    void routed.wait.then(() => {
      if (!down.destroyed && !down.closed) forward(down, headers, ctx, peerIp, start, routed.admitted, round + 1);
    });
    return;
  }
  const target = routed;
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

  /** An answer from here; extra: header lines as route() writes them (a redirect's location). */
  const local = (code: number, body: string, f: string, grpcCode?: number, extra?: string) => {
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
    down.respond({ [HTTP2_HEADER_STATUS]: code, 'content-type': 'text/plain', ...(extra ? headerFields(extra) : {}) });
    down.end(body);
  };

  if (target.kind === 'local') return local(target.status, target.body, target.flags, grpcStatusOfHttp(target.status), target.headers);

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
  let shadow: Shadow | null = null;
  down.on('data', (c: Buffer) => {
    reqBytes += c.length;
    shadow?.write(c);
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
    shadow?.end();
    up?.end();
  });

  /** Another attempt, when the policy, the attempts left and the retry budget allow it. */
  const mayRetry = (kind: 'connect' | 'reset' | 'per-try-timeout' | 'status'): boolean => {
    if (!retry || !replayable || attempt > retry.attempts || down.destroyed || down.headersSent) return false;
    if (kind === 'connect' && !retry.onConnectFailure) return false;
    if (kind === 'reset' && !retry.onReset) return false;
    if (kind === 'per-try-timeout' && !retry.onPerTryTimeout) return false;
    if (svc && !inRetry) {
      if (!retryBudgetAllows(svc.policy, svc.live)) {
        core.metrics.retryBudgetExhausted.inc();
        // A retry not made, as on HTTP/1.1: a forwarded answer keeps this flag, a local reply sets its own.
        flags = 'URX';
        return false;
      }
      const live = svc.live;
      live.retries++;
      inRetry = true;
      down.once('close', () => live.retries--);
    }
    const n = attempt++;
    core.metrics.retries.inc();
    // Until the next attempt starts, body bytes wait in the stream (flow control holds the client
    // back; send() resumes it): kept here, they could outgrow what a retry keeps, and the retry would
    // go with part of the body.
    up = null;
    down.pause();
    setTimeout(() => {
      if (down.destroyed || down.closed) return;
      const again = routeOf(RETRY_ADMITTED);
      if (again.kind === 'local') return local(again.status, again.body, again.flags, grpcStatusOfHttp(again.status));
      if (again.kind === 'upstream') send(again);
    }, backoffMs(retry, n));
    return true;
  };

  // Deadlines: the client's (grpc-timeout) counts from now, the route's from when the request goes
  // upstream, after a fault delay (Envoy's router, which owns the route timeout, runs after its fault
  // filter). Inbound: the calling side owns the route's deadline; none is added here. Passthrough
  // traffic gets the mesh default.
  const routeTimeout = target.inbound ? undefined : (target.rule?.timeoutMs ?? (svc?.policy ?? core.table.defaultPolicy).requestTimeoutMs);
  const timers: NodeJS.Timeout[] = [];
  const expire = () => {
    upEnded = true; // given up on: its closing is not news
    up?.close(constants.NGHTTP2_CANCEL);
    if (!down.headersSent) local(504, 'deadline exceeded', 'UT', 4);
    else down.close(constants.NGHTTP2_CANCEL);
  };
  const arm = (ms: number | undefined) => {
    if (ms === undefined) return;
    const timer = setTimeout(expire, timerMs(ms));
    timer.unref();
    timers.push(timer);
  };
  const disarm = () => {
    for (const timer of timers) clearTimeout(timer);
  };
  arm(grpcTimeoutMs(headers['grpc-timeout'] as string | undefined));
  down.on('close', () => {
    disarm();
    endAttempt();
    shadow?.cancel();
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
    const policy = svc?.policy ?? core.table.defaultPolicy;
    const inbound = tgt.inbound;
    // Inbound sessions are made inside the pod and kept apart from outbound ones to the same address.
    const dial = inbound ? { key: `inbound/${tgt.address}:${tgt.port}`, connect: () => inbound.dial(tgt.address, tgt.port) } : undefined;
    const have = core.h2.existing(tgt.address, tgt.port, dial?.key);
    // Circuit breaking as on HTTP/1.1: streams waiting for a session that is still connecting, and the
    // sessions (one per endpoint) the service holds.
    if (svc && (!have || have.connecting) && svc.live.pending >= policy.limits.maxPendingRequests) return local(503, 'too many requests waiting for an upstream connection', 'UO', 14);
    if (svc && !have && svc.live.connections >= policy.limits.maxConnections) return local(503, 'upstream connection limit reached (circuit breaker open)', 'UO', 14);
    if (svc && ep) core.balancer.begin(svc, ep);
    let ended = false;
    endAttempt = () => {
      if (ended) return;
      ended = true;
      if (svc && ep) core.balancer.end(svc, ep);
    };
    const session = have ?? core.h2.session(tgt.address, tgt.port, { ...(dial ? { dial } : {}), idleTimeoutMs: policy.poolIdleTimeoutMs, connectTimeoutMs: policy.connectTimeoutMs, ...(svc ? { live: svc.live } : {}) });
    const mine = session.request(upstreamHeaders(head, headers, tgt, peerIp), { endStream: false });
    up = mine;
    upEnded = false;
    for (const c of kept) mine.write(c);
    if (downEnded) mine.end();
    else down.resume();
    const current = () => up === mine;
    if (svc && session.connecting) {
      // Pending until its session connects or it ends, whichever comes first.
      const live = svc.live;
      live.pending++;
      let waiting = true;
      const done = () => {
        if (!waiting) return;
        waiting = false;
        live.pending--;
      };
      core.h2.whenConnected(session, done);
      mine.once('close', done);
    }
    let perTryTimer: NodeJS.Timeout | undefined;
    const perTry = retry?.perTryTimeoutMs;
    if (perTry) {
      // This attempt alone may take so long, counted (as on HTTP/1.1) once it has a connection.
      core.h2.whenConnected(session, () => {
        if (!current() || upEnded || mine.closed) return;
        perTryTimer = setTimeout(() => {
          if (!current() || upEnded || down.headersSent) return;
          upEnded = true;
          mine.close(constants.NGHTTP2_CANCEL);
          endAttempt();
          if (!mayRetry('per-try-timeout')) local(504, 'upstream per-try timeout', 'UT', 4);
        }, timerMs(perTry));
        perTryTimer.unref();
      });
    }
    /** This attempt is over without an answer: retry it, or tell the client. */
    const failed = (err?: Error) => {
      clearTimeout(perTryTimer);
      if (!current() || down.destroyed || down.closed || upEnded) return;
      upEnded = true;
      if (down.headersSent) return void down.close(constants.NGHTTP2_INTERNAL_ERROR);
      if (svc && ep) core.balancer.report(svc, svc.endpoints, ep, 0);
      endAttempt();
      // A stream whose session never connected (refused, unreachable, past the connect timeout) failed
      // with it: a connect failure. Otherwise the stream, or its session, was reset.
      const connectFailure = session.connecting;
      if (mayRetry(connectFailure ? 'connect' : 'reset')) return;
      const cause = (err as { cause?: Error } | undefined)?.cause ?? err;
      if (connectFailure) local(503, `upstream connect error${cause ? `: ${cause.message}` : ''}`, 'UF');
      else local(502, 'upstream reset', 'UC');
    };
    // The upstream stream going away without a proper end (an error, or a reset that
    // node reports only as 'close') must not leave the client waiting.
    mine.on('error', failed);
    mine.on('close', () => failed());
    mine.on('response', (res, resFlags) => {
      clearTimeout(perTryTimer);
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
      disarm();
      // A session that died mid-response ends its streams too, destroyed with an error code: the client
      // is told with a reset (as on HTTP/1.1), not an END_STREAM that makes a cut response look whole.
      if (mine.destroyed && mine.rstCode !== constants.NGHTTP2_NO_ERROR) return void down.close(constants.NGHTTP2_INTERNAL_ERROR);
      if (!down.destroyed) down.end();
    });
  };

  /** The first attempt; the route's deadline and a mirror start with it. */
  const go = () => {
    arm(routeTimeout);
    const m = target.rule?.mirror;
    // A copy for the shadow, its body teed from what arrives (the 'data' handler), never past REPLAY_LIMIT.
    if (m && roll(m.percent)) shadow = mirror(core, head, m.service, peerIp, REPLAY_LIMIT, (t) => upstreamHeaders(head, headers, t, peerIp));
    if (shadow && downEnded) shadow.end();
    send(target);
  };
  if (target.delayMs) {
    // Fault injection: this request waits on purpose before it goes anywhere; its body waits in the
    // stream (flow control holds the client back) instead of being kept here past what a retry keeps.
    flags = 'DI';
    down.pause();
    setTimeout(() => {
      if (down.destroyed || down.closed || down.headersSent) return;
      go();
    }, target.delayMs);
    return;
  }
  go();
}
