// SPDX-License-Identifier: Apache-2.0
/**
 * One downstream HTTP/1.1 connection: parses requests strictly, routes each,
 * forwards it over a pooled upstream connection, and streams the response
 * back. Requests are handled one at a time, so pipelined requests are
 * answered in order; bytes that arrive meanwhile wait (with backpressure).
 */
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { ChunkedScanner } from './chunked.ts';
import { IDLE_TIMEOUT_MS, coarseNow, unwatchIdle, watchIdle } from './idle.ts';
import { localResponse } from './local-reply.ts';
import { mirror } from './mirror.ts';
import { newRequestId } from './request-id.ts';
import { type Head, HttpParseError, forwardHeaders, header, headEnd, normalizeTarget, parseHead, reasonPhrase } from './parse.ts';
import type { ResponseSink, UpstreamConn } from '../upstream/conn.ts';
import { type ConnCounts, type ConnWaiter, stopWaiting, waitForRoom } from '../upstream/waiters.ts';
import type { ProxyCore } from '../core.ts';
import type { Peer } from '../telemetry/metrics.ts';
import type { ServiceInfo } from '../routing/table.ts';
import { type InboundDial, MAX_ADMISSION_ROUNDS, type Pending, RATE_LIMITED, RETRY_ADMITTED, type Target, inboundRoute, route } from '../route.ts';
import { peerOf } from '../routing/select.ts';
import { type RetryPolicy, backoffMs, retriableStatus, retryBudgetAllows } from '../routing/policy.ts';
import { MAX_TIMER_MS, timerMs } from '../timer.ts';
import { roll } from '../policy/fault.ts';
import { recordExchange } from '../telemetry/exchange.ts';

const MAX_HEAD = 64 * 1024;
const ID_LINE_PREFIX = Buffer.from('x-request-id: ', 'latin1');

/** Pipelined bytes held before the socket is paused. */
const MAX_PENDING = 256 * 1024;
/** Request bodies up to this size are kept while they are forwarded, so a retry can send them again (Envoy keeps a similar buffer). */
const REPLAY_LIMIT = 64 * 1024;

const S_HEAD = 0;
const S_BODY = 1;
const S_WAIT = 2;
const S_TUNNEL = 3;
const S_CLOSED = 4;


export interface SessionContext {
  core: ProxyCore;
  /** The workload whose traffic this listener carries (outbound listeners are per pod). */
  source: Peer | null;
  /** Where the client meant to go (from originalDst), when intercepted. */
  origDst: { address: string; port: number } | null;
  /** A fixed service for this listener (bound mode). */
  service: string | null;
  /** An inbound listener's: requests go to the application in the pod, reached with dial. */
  inbound?: { workload: Peer; dial: InboundDial };
  /** Between requests, the connection is closed once the client has been silent this long (default IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number;
}

export class Http1Session implements ResponseSink {
  private readonly socket: Socket;
  private readonly ctx: SessionContext;
  private pending: Buffer | null = null;
  private scanFrom = 0;
  private state = S_HEAD;
  private req: Head | null = null;
  private upstream: UpstreamConn | null = null;
  /** Request body still to forward: bytes (length framing) or a chunk scanner. */
  private bodyLeft = 0;
  private bodyScanner: ChunkedScanner | null = null;
  /** The response's chunked framing, taken off for an HTTP/1.0 client (null otherwise). */
  private dechunk: ChunkedScanner | null = null;
  private responseStarted = false;
  private closeAfter = false;
  /** The client sent its FIN: once the requests already here are answered, the connection closes. */
  private clientEnded = false;
  /** The request's body has been read to its end (or it had none). */
  private bodyDone = true;
  private readonly peer: string;
  /** "x-forwarded-for: <peer>\r\n", made at the first request that needs it. */
  private xffLine: Buffer | null = null;
  // What the current exchange has done, for metrics and the access log.
  private exStart = 0;
  private reqBytes = 0;
  private resBytes = 0;
  private status = 0;
  private flags = '-';
  private target: Target | null = null;
  private retry: RetryPolicy | null = null;
  /** The request body forwarded so far, kept for a retry (null: no body, or too long to keep). */
  private replay: Buffer[] | null = null;
  private replayBytes = 0;
  /** The body's framing (length or chunk scanner) is set up: a retry continues it instead of starting over. */
  private bodyStarted = false;
  /** The attempt under way, for least-request counts and outlier detection. */
  private attemptOn: (Target & { kind: 'upstream' }) | null = null;
  private attempt = 1;
  private inRetry = false;
  private activeOn: ServiceInfo | null = null;
  /** Queued under its service's maxConnections (see waiters.ts), and whose queue. */
  private waiting: ConnWaiter | null = null;
  private waitingOn: ConnCounts | null = null;
  /** Bumped per exchange, so late callbacks of an earlier one are recognised. */
  private exchangeId = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (performance.now() time), 0 when none is pending. */
  private timerAt = 0;
  private deadline = 0;

  constructor(socket: Socket, ctx: SessionContext, initial: Buffer | null) {
    this.socket = socket;
    this.ctx = ctx;
    this.peer = socket.remoteAddress ?? '';
    socket.setNoDelay(true);
    watchIdle(this, ctx.idleTimeoutMs ?? IDLE_TIMEOUT_MS);
    this.lastActive = coarseNow;
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('error', () => this.abort());
    socket.on('close', () => this.abort());
    // The listener allows half-open sockets (TCP needs them): a client's FIN is handled here.
    socket.on('end', () => this.onClientEnd());
    socket.on('drain', () => this.upstream?.resume());
    if (initial) this.onData(initial);
    // Detection paused the socket; reading resumes here unless backpressure says otherwise.
    if (this.state !== S_CLOSED && !(this.pending && this.pending.length > MAX_PENDING)) socket.resume();
  }

  /** Coarse time of the last bytes from the client (see watchIdle). */
  lastActive: number;

  /** Closes the connection when it has been idle too long (called by the idle sweep). */
  expireIfIdle(now: number): boolean {
    if (now - this.lastActive < (this.ctx.idleTimeoutMs ?? IDLE_TIMEOUT_MS) || this.req) return false;
    this.socket.destroy();
    return true;
  }

  private onData(chunk: Buffer): void {
    this.lastActive = coarseNow;
    if (this.state === S_TUNNEL) {
      this.upstream?.socket.write(chunk);
      return;
    }
    if (this.state === S_CLOSED) return;
    this.pending = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    try {
      if (this.state === S_BODY) this.forwardBody();
      if (this.state === S_HEAD) this.nextRequest();
    } catch (err) {
      this.protocolError(err);
    }
    if (this.pending && this.pending.length > MAX_PENDING) this.socket.pause();
  }

  /**
   * The client finished sending. A tunnel passes the half-close on; otherwise
   * the requests already received still get their answers, and then the
   * connection closes.
   */
  private onClientEnd(): void {
    if (this.state === S_TUNNEL) {
      this.upstream?.socket.end();
      return;
    }
    // Requests already here are still answered, in order (a pipeline the client sent before its FIN).
    this.clientEnded = true;
    // With no request under way, what is buffered is at most part of a head that can never complete.
    if (this.state === S_HEAD && !this.req) {
      this.state = S_CLOSED;
      this.socket.end();
    }
  }

  /** Parses and dispatches the next request, if a whole head is buffered. */
  private nextRequest(): void {
    let buf = this.pending;
    if (!buf || buf.length === 0) return;
    // Empty lines before a request line are ignored (RFC 9112 2.2): some clients send a CRLF after a body.
    // (A head never starts with CR, so one that does is such lines, the CR and LF perhaps in separate reads.)
    if (buf[0] === 13) {
      let skip = 0;
      while (skip + 1 < buf.length && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
      if (skip > 0) {
        this.scanFrom = 0;
        buf = this.pending = skip === buf.length ? null : buf.subarray(skip);
        if (!buf) return;
      }
    }
    const end = headEnd(buf, this.scanFrom);
    if (end < 0) {
      if (buf.length > MAX_HEAD) throw new HttpParseError(431, 'request head too large');
      // A bare LF would never complete a head: say so now instead of waiting for 64 KiB.
      for (let lf = buf.indexOf(10, this.scanFrom); lf >= 0; lf = buf.indexOf(10, lf + 1)) {
        if (lf === 0 || buf[lf - 1] !== 13) throw new HttpParseError(400, 'lines must end with CRLF');
      }
      this.scanFrom = buf.length;
      return;
    }
    this.scanFrom = 0;
    // The limit holds for a head that came whole in one read (or with the end of a long wait) as well.
    if (end > MAX_HEAD) throw new HttpParseError(431, 'request head too large');
    const head = parseHead(buf, end, 'request');
    normalizeTarget(head);
    if (head.requestId === null) {
      head.requestId = newRequestId();
      head.idGenerated = true;
    }
    this.pending = end === buf.length ? null : buf.subarray(end);
    this.socket.resume();
    this.req = head;
    this.responseStarted = false;
    this.closeAfter = head.close;
    this.bodyDone = !head.chunked && head.contentLength <= 0;
    this.exchangeId++;
    this.exStart = performance.now();
    this.reqBytes = head.size;
    this.resBytes = 0;
    this.status = 0;
    this.flags = '-';
    this.routeAndDispatch(head);
  }

  private routeOf(head: Head, admitted?: ReadonlySet<string>): Target | Pending {
    const c = this.ctx;
    if (c.inbound && c.origDst) return inboundRoute(c.core.table, c.origDst, head, c.inbound);
    return route(c.core.table, c.origDst, c.service, head, c.core, c.source, this.peer, admitted);
  }

  /**
   * Routes the request and sends it on; one that waits for the node's
   * rate-limit tokens is routed again when they come (its body bytes wait
   * in `pending` meanwhile, as during a fault delay).
   */
  private routeAndDispatch(head: Head, admitted?: ReadonlySet<string>, round = 0): void {
    const target = this.routeOf(head, admitted);
    if (target.kind !== 'pending') return this.dispatch(head, target);
    this.state = S_WAIT;
    this.target = null;
    const exchange = this.exchangeId;
    void target.wait.then(() => {
      if (exchange !== this.exchangeId || this.state === S_CLOSED) return;
      try {
        if (round + 1 >= MAX_ADMISSION_ROUNDS) this.dispatch(head, RATE_LIMITED);
        else this.routeAndDispatch(head, target.admitted, round + 1);
      } catch (err) {
        this.protocolError(err);
      }
    });
  }

  private dispatch(head: Head, target: Target): void {
    this.target = target;
    if (target.kind === 'local') {
      this.flags = target.flags;
      // Answered here: a request body we did not read would be taken for the next request.
      if (head.contentLength > 0 || head.chunked) this.closeAfter = true;
      this.state = S_WAIT;
      this.writeLocal(target.status, target.body, target.headers);
      this.finishExchange();
      return;
    }
    this.state = S_WAIT;
    const svc = target.service;
    const policy = svc?.policy ?? this.ctx.core.table.defaultPolicy;
    // Circuit breaking: past the cluster's limit of active requests, refuse at once.
    if (svc && svc.live.active >= policy.limits.maxRequests) return this.localReply(503, 'UO', 'upstream overflow (circuit breaker open)\n');
    if (svc) {
      svc.live.active++;
      this.activeOn = svc;
    }
    const rule = target.rule;
    // A body is streamed upstream as it arrives, and kept (up to REPLAY_LIMIT) so a retry can send it
    // again; a longer one turns retries off once it passes the limit. Upgrades are never retried.
    const noBody = !head.chunked && head.contentLength <= 0;
    const replayable = !head.upgrade && (noBody || head.chunked || head.contentLength <= REPLAY_LIMIT);
    this.retry = replayable ? (rule?.retry !== undefined ? rule.retry : policy.retry) : null;
    this.replay = this.retry && !noBody ? [] : null;
    this.replayBytes = 0;
    this.bodyStarted = false;
    this.attempt = 1;
    // Inbound: the caller's side owns the deadline (its route's timeout); none is added here.
    const timeoutMs = target.inbound ? MAX_TIMER_MS : (rule?.timeoutMs ?? policy.requestTimeoutMs);
    if (target.delayMs) {
      // Fault injection: this request waits on purpose before it goes anywhere. As in Envoy (the fault
      // filter runs before the router), the route's timeout and any mirroring start once the delay is over;
      // meanwhile a timer left from an earlier request finds a deadline past the delay.
      this.flags = 'DI';
      this.deadline = this.exStart + target.delayMs + timeoutMs;
      const exchange = this.exchangeId;
      setTimeout(() => exchange === this.exchangeId && this.state !== S_CLOSED && this.forward(head, target, timeoutMs, performance.now()), target.delayMs);
      return;
    }
    this.forward(head, target, timeoutMs, this.exStart);
  }

  /** The request's deadline (counted from `from`), its mirror copy, and its first attempt. */
  private forward(head: Head, target: Target & { kind: 'upstream' }, timeoutMs: number, from: number): void {
    this.armTimeout(timeoutMs, from);
    const m = target.rule?.mirror;
    if (m && !head.chunked && head.contentLength <= 0 && !head.upgrade && roll(m.percent)) mirror(this.ctx.core, head, m.service, (h, t) => this.requestHead(h, t), this.peer);
    this.tryUpstream(head, target);
  }

  /**
   * One attempt: a pooled connection (synchronously), or a new one within
   * the connect timeout, or, at the service's connection limit, a place in
   * line for either (woken: true once it has waited, so it keeps its turn).
   */
  private tryUpstream(head: Head, target: Target & { kind: 'upstream' }, woken = false): void {
    this.target = target;
    // Inbound connections (made inside a pod) are pooled apart from outbound ones to the same address:
    // one must never stand in for the other.
    const poolAddress = target.inbound ? `inbound/${target.address}` : target.address;
    const pooled = this.ctx.core.pool.take(poolAddress, target.port);
    if (pooled) return this.send(pooled, head, target);
    const svc = target.service;
    const policy = svc?.policy ?? this.ctx.core.table.defaultPolicy;
    if (svc && svc.live.pending >= policy.limits.maxPendingRequests) return this.localReply(503, 'UO', 'too many requests waiting for an upstream connection\n');
    // maxConnections caps the upstream connections a cluster may hold open (pooled ones included);
    // past it the request waits, as in Envoy, within maxPendingRequests and its route's timeout.
    if (svc && svc.live.connections >= policy.limits.maxConnections) return this.waitForConnection(svc.live, poolAddress, head, target, woken);
    if (svc) svc.live.pending++;
    const exchange = this.exchangeId;
    const dial = target.inbound?.dial;
    this.ctx.core.pool.connect(
      poolAddress,
      target.port,
      (err, conn) => {
        if (svc) svc.live.pending--;
        if (this.state === S_CLOSED || exchange !== this.exchangeId) {
          if (conn) this.ctx.core.pool.release(conn, policy.poolIdleTimeoutMs);
          return;
        }
        if (err || !conn) {
          this.reportAttempt(target, 0);
          if (this.retryAfter('connect')) return;
          this.closeAfter = true;
          return this.localReply(503, 'UF', `upstream connect error: ${err?.message ?? 'unknown'}\n`);
        }
        this.send(conn, head, target);
      },
      policy.connectTimeoutMs,
      dial && (() => dial(target.address, target.port)),
      // Counted against maxConnections from the connect on (one pooled after its client left included).
      svc?.live,
    );
  }

  private waitForConnection(counts: ConnCounts, address: string, head: Head, target: Target & { kind: 'upstream' }, front: boolean): void {
    const exchange = this.exchangeId;
    const w: ConnWaiter = {
      address,
      port: target.port,
      wake: () => {
        if (this.waiting !== w) return;
        this.waiting = this.waitingOn = null;
        if (this.state !== S_CLOSED && exchange === this.exchangeId) this.tryUpstream(head, target, true);
      },
    };
    this.waiting = w;
    this.waitingOn = counts;
    waitForRoom(counts, w, front);
    // The service's idle connections to other endpoints would hold the room until their idle timeout:
    // one closes, and its close wakes the first in line.
    this.ctx.core.pool.evictIdle(counts);
  }

  /** Out of the line for a connection (the exchange ended: its timeout, a local reply, the client gone). */
  private leaveLine(): void {
    if (!this.waiting) return;
    stopWaiting(this.waitingOn!, this.waiting);
    this.waiting = this.waitingOn = null;
  }

  /**
   * Schedules another attempt when the policy, the attempts left and the
   * retry budget allow it; false means give up.
   */
  private retryAfter(kind: 'connect' | 'reset' | 'per-try-timeout' | 'status'): boolean {
    const p = this.retry;
    const head = this.req;
    if (!p || !head || this.attempt > p.attempts) return false;
    if (kind === 'connect' && !p.onConnectFailure) return false;
    if (kind === 'reset' && !p.onReset) return false;
    if (kind === 'per-try-timeout' && !p.onPerTryTimeout) return false;
    const svc = this.target?.service;
    if (svc && !this.inRetry) {
      if (!this.budgetAllows()) {
        this.ctx.core.metrics.retryBudgetExhausted.inc();
        return false;
      }
      svc.live.retries++;
      this.inRetry = true;
    }
    const attempt = this.attempt++;
    this.ctx.core.metrics.retries.inc();
    const exchange = this.exchangeId;
    setTimeout(() => {
      if (this.state === S_CLOSED || exchange !== this.exchangeId) return;
      const target = this.routeOf(head, RETRY_ADMITTED);
      if (target.kind === 'local') return this.localReply(target.status, target.flags, target.body);
      if (target.kind === 'upstream') this.tryUpstream(head, target);
    }, backoffMs(p, attempt));
    return true;
  }

  /** Whether the retry budget lets this exchange start retrying (one already retrying holds its place). */
  private budgetAllows(): boolean {
    const svc = this.target?.service;
    return !svc || this.inRetry || retryBudgetAllows(svc.policy, svc.live);
  }

  /** Outlier accounting for an attempt's outcome (0: it failed to connect or was reset). */
  private reportAttempt(target: Target | null, status: number): void {
    if (target?.kind === 'upstream' && target.service && target.endpoint) this.ctx.core.balancer.report(target.service, target.service.endpoints, target.endpoint, status);
  }

  private releaseAttempt(): void {
    const a = this.attemptOn;
    if (a) {
      this.ctx.core.balancer.end(a.service!, a.endpoint!);
      this.attemptOn = null;
    }
  }

  /** Answers from here and ends the exchange. */
  private localReply(status: number, flags: string, body: string): void {
    this.flags = flags;
    this.writeLocal(status, body);
    this.finishExchange();
  }

  /**
   * One timer per session, and not touched per request: a timer already due
   * at or before the new deadline looks again when it fires (onTimer) and
   * waits out the rest. Re-arming a timer costs more than a keep-alive
   * request's whole routing.
   */
  private armTimeout(requested: number, from: number): void {
    const ms = timerMs(Math.max(requested, 1));
    this.deadline = from + ms;
    if (this.timerAt !== 0 && this.timerAt <= this.deadline) return;
    this.setTimer(ms);
  }

  private setTimer(wanted: number): void {
    const ms = timerMs(wanted);
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = performance.now() + ms;
    this.timer = setTimeout(() => this.onTimer(), ms);
    this.timer.unref();
  }

  private onTimer(): void {
    this.timerAt = 0;
    if (!this.req || this.state === S_CLOSED || this.state === S_TUNNEL) return;
    const left = this.deadline - performance.now();
    if (left > 1) {
      // Armed for an earlier request of this connection (or fired a little early): wait out the rest.
      this.setTimer(left);
      return;
    }
    this.upstream?.abandon();
    this.upstream = null;
    if (this.responseStarted) {
      this.flags = 'UT';
      this.record();
      this.socket.destroy();
      this.state = S_CLOSED;
      return;
    }
    if (this.state === S_BODY) this.closeAfter = true;
    this.localReply(504, 'UT', 'upstream request timeout\n');
  }

  private send(conn: UpstreamConn, head: Head, target: Target & { kind: 'upstream' }): void {
    this.upstream = conn;
    const perTry = this.retry?.perTryTimeoutMs;
    if (perTry) {
      // A per-try timeout: this attempt alone may take so long; then the next one is tried.
      const exchange = this.exchangeId;
      setTimeout(() => {
        if (exchange !== this.exchangeId || this.upstream !== conn || this.responseStarted) return;
        conn.abandon();
        this.upstream = null;
        this.releaseAttempt();
        if (!this.retryAfter('per-try-timeout')) this.localReply(504, 'UT', 'upstream per-try timeout\n');
      }, timerMs(perTry)).unref();
    }
    if (target.service && target.endpoint) {
      this.ctx.core.balancer.begin(target.service, target.endpoint);
      this.attemptOn = target;
    }
    conn.begin(this, head.method === 'HEAD', head.upgrade);
    const reqHead = this.requestHead(head, target);
    if (!head.chunked && head.contentLength <= 0) {
      conn.socket.write(reqHead, 'latin1');
      this.state = S_WAIT;
      return;
    }
    conn.socket.cork();
    conn.socket.write(reqHead, 'latin1');
    if (this.attempt > 1 && this.replay && this.bodyStarted) {
      // A retry: the body bytes the client already sent go again, and the rest follows as it comes.
      // (The earlier attempt's drain may never come now: reading resumes for this one.)
      this.socket.resume();
      for (const part of this.replay) conn.socket.write(part);
      this.state = this.bodyDone ? S_WAIT : S_BODY;
      conn.socket.uncork();
      if (!this.bodyDone) this.forwardBody();
      return;
    }
    try {
      this.startBody(head);
    } catch (err) {
      // A malformed body found here (after an asynchronous connect) is answered like any other.
      this.protocolError(err);
    } finally {
      conn.socket.uncork();
    }
  }

  /**
   * The head sent upstream. The common case is bytes: every line as received,
   * then x-forwarded-for and (when the proxy made it up) x-request-id, copied
   * into one buffer, with no string made of the received head.
   */
  private requestHead(head: Head, target: Target & { kind: 'upstream' }): Buffer | string {
    const raw = head.raw;
    if (head.plain && raw !== null && target.path === undefined && target.host === undefined) {
      const xff = (this.xffLine ??= Buffer.from(`x-forwarded-for: ${this.peer}\r\n`, 'latin1'));
      const id = head.idGenerated ? head.requestId! : '';
      const out = Buffer.allocUnsafe(raw.length + xff.length + (id ? ID_LINE_PREFIX.length + id.length + 2 : 0));
      out.set(raw, 0);
      // Over the blank line that ended the received head; written again last.
      let at = raw.length - 2;
      out.set(xff, at);
      at += xff.length;
      if (id) {
        out.set(ID_LINE_PREFIX, at);
        at += ID_LINE_PREFIX.length;
        for (let i = 0; i < id.length; i++) out[at++] = id.charCodeAt(i);
        out[at++] = 13;
        out[at++] = 10;
      }
      out[at] = 13;
      out[at + 1] = 10;
      return out;
    }
    let out = `${head.method} ${target.path ?? head.target} HTTP/1.1\r\nhost: ${target.host ?? head.host ?? `${target.address}:${target.port}`}\r\n`;
    // HTTP/1.0 has no 100-continue: the expectation is ignored (RFC 9110 10.1.1), so no 1xx comes back for it.
    out += forwardHeaders(head, head.minor === 0 ? 'expect' : undefined);
    // Appended to, never trusted as the whole story (forwardHeaders dropped the original).
    const xff = header(head, 'x-forwarded-for');
    out += `x-forwarded-for: ${xff === undefined ? this.peer : `${xff}, ${this.peer}`}\r\n`;
    if (head.idGenerated) out += `x-request-id: ${head.requestId}\r\n`;
    if (head.chunked) out += 'transfer-encoding: chunked\r\n';
    else if (head.contentLength >= 0) out += `content-length: ${head.contentLength}\r\n`;
    if (head.upgrade) out += `connection: upgrade\r\nupgrade: ${header(head, 'upgrade')}\r\n`;
    return `${out}\r\n`;
  }

  private startBody(head: Head): void {
    this.bodyStarted = true;
    if (head.chunked) {
      this.bodyScanner = new ChunkedScanner();
      this.state = S_BODY;
    } else if (head.contentLength > 0) {
      this.bodyLeft = head.contentLength;
      this.state = S_BODY;
    } else {
      this.state = S_WAIT;
      return;
    }
    this.forwardBody();
  }

  /** Forwards buffered request-body bytes; the rest of pending is the next request. */
  private forwardBody(): void {
    const buf = this.pending;
    if (!buf || !this.upstream) return;
    let used: number;
    if (this.bodyScanner) {
      used = this.bodyScanner.scan(buf);
    } else {
      used = Math.min(this.bodyLeft, buf.length);
      this.bodyLeft -= used;
    }
    const part = used === buf.length ? buf : buf.subarray(0, used);
    this.pending = used === buf.length ? null : buf.subarray(used);
    this.reqBytes += part.length;
    if (this.replay && part.length) {
      this.replayBytes += part.length;
      // Past the limit the body is no longer kept, and this request is no longer retried.
      if (this.replayBytes > REPLAY_LIMIT) {
        this.replay = null;
        this.retry = null;
      } else this.replay.push(part);
    }
    if (part.length && !this.upstream.socket.write(part)) {
      this.socket.pause();
      this.upstream.socket.once('drain', () => this.socket.resume());
    }
    const done = this.bodyScanner ? this.bodyScanner.done : this.bodyLeft === 0;
    if (done) {
      this.bodyScanner = null;
      this.bodyDone = true;
      if (this.state === S_BODY) this.state = S_WAIT;
    }
  }

  // ---- ResponseSink: the upstream's answer ----

  onInformational(head: Head): void {
    // An HTTP/1.0 client gets no 1xx (RFC 9110 15.2): it would take it for the response.
    if (this.req?.minor === 0) return;
    this.socket.write(`HTTP/1.1 ${head.status} ${reasonPhrase(head)}\r\n${forwardHeaders(head)}\r\n`);
  }

  onHead(res: Head, hasBody: boolean): void {
    this.reportAttempt(this.target, res.status);
    if (this.retry && this.attempt <= this.retry.attempts && retriableStatus(this.retry, res.status)) {
      if (this.budgetAllows()) {
        // Not forwarded: this answer is replaced by the next attempt's.
        const conn = this.upstream;
        this.upstream = null;
        conn?.abandon();
        this.releaseAttempt();
        if (this.retryAfter('status')) return;
        return this.localReply(res.status, 'URX', `upstream answered ${res.status}; retries exhausted\n`);
      }
      // Out of budget: the upstream's own answer goes to the client, flagged as a retry not made.
      this.ctx.core.metrics.retryBudgetExhausted.inc();
      this.flags = 'URX';
    }
    this.responseStarted = true;
    // No retry after this: the kept body is not needed (a long stream would hold it for nothing).
    if (this.bodyDone) this.replay = null;
    if (res.status === 101) {
      this.socket.write(`HTTP/1.1 101 ${reasonPhrase(res)}\r\n${forwardHeaders(res)}connection: upgrade\r\nupgrade: ${header(res, 'upgrade') ?? ''}\r\n\r\n`);
      this.state = S_TUNNEL;
      if (this.pending) {
        this.upstream!.socket.write(this.pending);
        this.pending = null;
      }
      return;
    }
    // A body that ends at close cannot be framed for a keep-alive client: close after it.
    if (hasBody && !res.chunked && res.contentLength < 0) this.closeAfter = true;
    // HTTP/1.0 has no chunked coding (RFC 9112 6.1): the body goes with the framing taken off, ended by the close.
    const http10 = this.req?.minor === 0;
    if (http10 && hasBody && res.chunked) {
      this.dechunk = new ChunkedScanner();
      this.closeAfter = true;
    }
    this.status = res.status;
    if (res.plain && res.raw !== null && !this.closeAfter && !http10) {
      // Nothing in it is hop-by-hop and its framing stays valid: it goes as received.
      this.resBytes += res.size;
      this.headOut = res.raw;
      return;
    }
    // Written out again (a close to announce, or hop-by-hop headers to drop): the reason goes too.
    let out = `HTTP/1.1 ${res.status} ${reasonPhrase(res)}\r\n${forwardHeaders(res)}`;
    if (res.chunked) {
      // Never to HTTP/1.0 (RFC 9112 6.1), not even on a HEAD, 204 or 304.
      if (!http10) out += 'transfer-encoding: chunked\r\n';
    } else if (res.contentLength >= 0) out += `content-length: ${res.contentLength}\r\n`;
    // An HTTP/1.0 client's connection stays open only when the response says so (RFC 9112 9.3).
    if (this.closeAfter) out += 'connection: close\r\n';
    else if (http10) out += 'connection: keep-alive\r\n';
    this.resBytes += out.length + 2;
    // Held until the first body bytes (usually in the same upstream read), so that
    // head and body leave in one write: no cork, no writev bookkeeping per response.
    this.headOut = `${out}\r\n`;
  }

  /** The response head, not yet written: as received (a Buffer) or written out again (a string). */
  private headOut: string | Buffer | null = null;

  private flushHead(): void {
    const head = this.headOut;
    if (head === null) return;
    this.headOut = null;
    if (typeof head === 'string') this.socket.write(head, 'latin1');
    else this.socket.write(head);
  }

  onBody(chunk: Buffer): boolean {
    if (this.dechunk) return this.dechunked(chunk);
    this.resBytes += chunk.length;
    const head = this.headOut;
    if (head === null) return this.socket.write(chunk);
    // The body usually follows its head as received in the same read: one write of both, nothing copied.
    if (typeof head !== 'string' && chunk.buffer === head.buffer && chunk.byteOffset === head.byteOffset + head.length) {
      this.headOut = null;
      return this.socket.write(Buffer.from(head.buffer, head.byteOffset, head.length + chunk.length));
    }
    if (chunk.length > 16 * 1024) {
      this.flushHead();
      return this.socket.write(chunk);
    }
    // Otherwise head and a short body are copied into one buffer: still one write.
    this.headOut = null;
    const out = Buffer.allocUnsafe(head.length + chunk.length);
    if (typeof head === 'string') out.write(head, 0, 'latin1');
    else head.copy(out);
    chunk.copy(out, head.length);
    return this.socket.write(out);
  }

  /** A chunked response body for an HTTP/1.0 client: only the chunks' data is written. */
  private dechunked(chunk: Buffer): boolean {
    const spans: number[] = [];
    // The upstream connection has checked this framing already (it finds the response's end with it).
    this.dechunk!.scan(chunk, 0, spans);
    this.flushHead();
    let ok = true;
    for (let i = 0; i < spans.length; i += 2) {
      this.resBytes += spans[i + 1]! - spans[i]!;
      ok = this.socket.write(chunk.subarray(spans[i]!, spans[i + 1]!));
    }
    return ok;
  }

  onTunnel(chunk: Buffer): void {
    this.socket.write(chunk);
  }

  onEnd(reusable: boolean): void {
    this.flushHead();
    const conn = this.upstream;
    this.upstream = null;
    if (this.state === S_TUNNEL) {
      conn?.socket.destroy();
      this.record();
      this.socket.end();
      this.state = S_CLOSED;
      return;
    }
    if (conn) {
      if (reusable && this.state === S_WAIT) this.ctx.core.pool.release(conn, (this.target?.service?.policy ?? this.ctx.core.table.defaultPolicy).poolIdleTimeoutMs);
      else conn.socket.destroy();
    }
    // The request body may still be arriving (an early response): close rather than misread it.
    if (this.state === S_BODY) this.closeAfter = true;
    this.finishExchange();
  }

  onError(err: Error, headSent: boolean): void {
    this.flushHead();
    this.upstream = null;
    this.releaseAttempt();
    if (!headSent) this.reportAttempt(this.target, 0);
    if (!headSent && !this.responseStarted && this.retryAfter('reset')) return;
    this.flags = 'UC';
    if (headSent || this.responseStarted) {
      this.record();
      this.socket.destroy();
      this.state = S_CLOSED;
      return;
    }
    this.closeAfter = true;
    this.writeLocal(502, `upstream error: ${err.message}\n`);
    this.finishExchange();
  }

  private finishExchange(): void {
    this.record();
    this.req = null;
    this.replay = null;
    // Late timers and callbacks of this exchange must not act on the next one.
    this.exchangeId++;
    this.responseStarted = false;
    this.dechunk = null;
    // A body we did not read to its end would be parsed as the next request: close instead.
    if (!this.bodyDone) this.closeAfter = true;
    if (this.closeAfter) {
      this.state = S_CLOSED;
      this.socket.end();
      return;
    }
    this.state = S_HEAD;
    if (this.pending) {
      try {
        this.nextRequest();
      } catch (err) {
        this.protocolError(err);
      }
    } else if (!this.clientEnded) {
      this.socket.resume();
    }
    if (this.clientEnded && this.state === S_HEAD && !this.req) {
      // The client is done sending and no whole request is left: nothing more can come.
      this.state = S_CLOSED;
      this.socket.end();
    }
  }

  private writeLocal(status: number, body: string, headers = ''): void {
    // Answered before the request's body was read: the connection closes after this (finishExchange), and says so.
    if (!this.bodyDone) this.closeAfter = true;
    // An HTTP/1.0 client keeps its connection only when the response says so (as proxied responses do).
    const keep = !this.closeAfter && this.req?.minor === 0 ? 'connection: keep-alive\r\n' : '';
    const out = localResponse(status, body, headers + keep, this.closeAfter);
    this.status = status;
    this.resBytes += out.length;
    this.socket.write(out);
  }

  /** Metrics and (sampled) access log for the exchange that just ended. */
  private record(): void {
    this.releaseAttempt();
    this.leaveLine();
    const head = this.req;
    if (!head) return;
    this.req = null;
    // The exchange is over for the circuit breaker and the retry budget.
    if (this.activeOn) {
      this.activeOn.live.active--;
      if (this.inRetry) this.activeOn.live.retries--;
      this.activeOn = null;
    }
    this.inRetry = false;
    recordExchange(this.ctx.core, {
      head,
      protocol: `HTTP/1.${head.minor}`,
      target: this.target,
      // Inbound: whoever connected, when it is a known endpoint.
      source: this.ctx.inbound ? peerOf(this.ctx.core.table, this.peer) : this.ctx.source,
      status: this.status,
      flags: this.flags,
      durationMs: performance.now() - this.exStart,
      requestBytes: this.reqBytes,
      responseBytes: this.resBytes,
      reporter: this.ctx.inbound ? 'destination' : undefined,
    });
  }

  private protocolError(err: unknown): void {
    this.flags = 'DPE';
    // abandon(): the upstream did nothing wrong, so no outlier accounting.
    this.upstream?.abandon();
    this.upstream = null;
    if (!(err instanceof HttpParseError)) {
      this.record();
      this.socket.destroy();
      this.state = S_CLOSED;
      return;
    }
    this.closeAfter = true;
    this.pending = null;
    if (!this.responseStarted) this.writeLocal(err.status, `${err.message}\n`);
    this.record();
    this.state = S_CLOSED;
    this.socket.end();
  }

  private abort(): void {
    if (this.req && this.state !== S_CLOSED) {
      // The client went away mid-exchange.
      this.flags = 'DC';
      this.record();
    }
    if (this.timer) clearTimeout(this.timer);
    unwatchIdle(this);
    this.leaveLine();
    if (this.state === S_CLOSED && !this.upstream) return;
    this.state = S_CLOSED;
    this.upstream?.abandon();
    this.upstream = null;
  }
}
