// SPDX-License-Identifier: Apache-2.0
/**
 * One upstream HTTP/1.1 connection: sends a request head, then reads the
 * response head and follows its body's framing, handing raw bytes to the
 * current exchange without copying them.
 */
import type { Socket } from 'node:net';
import { ChunkedScanner } from '../http1/chunked.ts';
import { type Head, HttpParseError, header, headEnd, parseHead } from '../http1/parse.ts';
import type { ConnCounts } from './waiters.ts';

const MAX_RESPONSE_HEAD = 64 * 1024;

/** Where every pooled upstream socket of this process reads (see onRead); reads never overlap. */
export const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export interface ResponseSink {
  /** 1xx other than 101: forwarded and then the final response follows. */
  onInformational(head: Head): void;
  /** The final head; 101 switches the connection to a tunnel. */
  onHead(head: Head, hasBody: boolean): void;
  /** Body bytes as received (chunked framing included); false asks for backpressure. */
  onBody(chunk: Buffer): boolean;
  /** The response is complete; reusable says the connection can serve another. */
  onEnd(reusable: boolean): void;
  /** Tunnel bytes after a 101. */
  onTunnel(chunk: Buffer): void;
  onError(err: Error, headSent: boolean): void;
}

const NEED_HEAD = 0;
const BODY_LENGTH = 1;
const BODY_CHUNKED = 2;
const BODY_UNTIL_CLOSE = 3;
const TUNNEL = 4;
const IDLE = 5;

export class UpstreamConn {
  readonly socket: Socket;
  readonly address: string;
  readonly port: number;
  private sink: ResponseSink | null = null;
  private state = IDLE;
  private pending: Buffer | null = null;
  private scanFrom = 0;
  private remaining = 0;
  private scanner: ChunkedScanner | null = null;
  private noBody = false;
  /** The protocols the request asked to upgrade to (lower case, comma-separated), or null: a 101 is only taken for one of them. */
  private upgrade: string | null = null;
  private headSent = false;
  dead = false;
  /** Requests served, for pool statistics. */
  served = 0;
  /**
   * When it went idle (the pool's coarse clock; NaN = not stamped yet). NaN,
   * not 0: a field that starts as a small integer and later takes Date.now()
   * makes V8 reshape every connection and drop the optimised code that reads
   * them, seconds into the process's life, in the middle of its traffic.
   */
  idleSince = NaN;
  /** Closed after this long idle in the pool: its service's connectionPool.idleTimeout, set at each release. */
  idleTimeoutMs = 60_000;
  private reuseBlocked = false;
  /** The service whose connection limit it counts against (the one that opened it), if any. */
  readonly counted: ConnCounts | null;

  /**
   * userBuffer: the socket reads into READ_BUFFER (net.connect's onread) and
   * calls onRead; otherwise it emits 'data' (sockets made elsewhere).
   */
  constructor(socket: Socket, address: string, port: number, userBuffer = false, counted: ConnCounts | null = null) {
    this.socket = socket;
    this.address = address;
    this.port = port;
    this.counted = counted;
    socket.setNoDelay(true);
    if (!userBuffer) socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('end', () => this.onClose(null));
    socket.on('close', () => this.onClose(null));
    socket.on('error', (err) => this.onClose(err));
  }

  /** Starts an exchange: the caller writes the request; responses go to sink. upgrade: the request's Upgrade (head.upgrade). */
  begin(sink: ResponseSink, noBody: boolean, upgrade: string | null = null): void {
    this.upgrade = upgrade;
    // A previous response may have left it paused for backpressure.
    this.socket.resume();
    this.sink = sink;
    this.state = NEED_HEAD;
    this.noBody = noBody;
    this.headSent = false;
    this.served++;
  }

  get idle(): boolean {
    return this.state === IDLE && !this.dead;
  }

  /**
   * n bytes arrived in READ_BUFFER. They are copied out at once, into a slice
   * of Node's small-buffer pool when short: the response may outlive this
   * call (a queued write, a partial head), and the copy is still cheaper than
   * the fresh 64 KiB allocation and stream push of a 'data' event.
   */
  onRead(n: number): void {
    const chunk = Buffer.allocUnsafe(n);
    READ_BUFFER.copy(chunk, 0, 0, n);
    this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    if (this.state === TUNNEL) {
      this.sink?.onTunnel(chunk);
      return;
    }
    if (this.state === IDLE || !this.sink) {
      // Bytes nobody asked for: this connection cannot be trusted with another request.
      this.socket.destroy();
      return;
    }
    let data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    // Set when the response is complete: handed back only after this read is fully looked at.
    let completed: boolean | null = null;
    try {
      while (data.length > 0 && this.sink && completed === null) {
        if (this.state === NEED_HEAD) {
          const end = headEnd(data, this.scanFrom);
          if (end < 0) {
            if (data.length > MAX_RESPONSE_HEAD) throw new HttpParseError(502, 'upstream response head too large');
            this.scanFrom = data.length;
            this.pending = data;
            return;
          }
          this.scanFrom = 0;
          // The limit holds for a head that came whole in one read as well.
          if (end > MAX_RESPONSE_HEAD) throw new HttpParseError(502, 'upstream response head too large');
          const head = parseHead(data, end, 'response');
          data = data.subarray(end);
          if (head.status >= 100 && head.status < 200 && head.status !== 101) {
            this.sink.onInformational(head);
            continue;
          }
          if (head.status === 101 && !this.upgradeAskedFor(head)) {
            // RFC 9110 7.8: a 101 answers an Upgrade request. One the request did not ask for would make
            // the connection a tunnel whose later requests nothing routes or authorizes.
            throw new HttpParseError(502, `upstream switched protocols (to "${header(head, 'upgrade') ?? ''}") without being asked to`);
          }
          this.headSent = true;
          if (head.status === 101) {
            this.state = TUNNEL;
            this.sink.onHead(head, false);
            if (data.length) this.sink.onTunnel(data);
            return;
          }
          const bodyless = this.noBody || head.status === 204 || head.status === 304;
          if (bodyless || head.contentLength === 0) {
            this.sink.onHead(head, false);
            completed = !head.close;
            continue;
          }
          if (head.chunked) {
            this.state = BODY_CHUNKED;
            this.scanner = new ChunkedScanner();
          } else if (head.contentLength > 0) {
            this.state = BODY_LENGTH;
            this.remaining = head.contentLength;
          } else {
            this.state = BODY_UNTIL_CLOSE;
          }
          this.sink.onHead(head, true);
          if (head.close && this.state !== BODY_UNTIL_CLOSE) this.reuseBlocked = true;
          continue;
        }
        if (this.state === BODY_LENGTH) {
          const take = Math.min(this.remaining, data.length);
          const part = take === data.length ? data : data.subarray(0, take);
          this.remaining -= take;
          data = data.subarray(take);
          if (!this.sink.onBody(part)) this.socket.pause();
          if (this.remaining === 0) completed = !this.reuseBlocked;
          continue;
        }
        if (this.state === BODY_CHUNKED) {
          const used = this.scanner!.scan(data);
          const part = used === data.length ? data : data.subarray(0, used);
          data = data.subarray(used);
          if (!this.sink.onBody(part)) this.socket.pause();
          if (this.scanner!.done) completed = !this.reuseBlocked;
          continue;
        }
        if (this.state === BODY_UNTIL_CLOSE) {
          if (!this.sink.onBody(data)) this.socket.pause();
          return;
        }
      }
      if (completed !== null) {
        // Bytes after a complete response (a body on HEAD/204/304, more than Content-Length)
        // would be read as the next request's response: this connection is not reused.
        this.finish(completed && data.length === 0);
      }
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private finish(reusable: boolean): void {
    const sink = this.sink!;
    this.sink = null;
    this.state = IDLE;
    this.scanner = null;
    const ok = reusable && !this.reuseBlocked && !this.dead;
    this.reuseBlocked = false;
    sink.onEnd(ok);
  }

  /** The 101's Upgrade names one of the protocols the request asked for. */
  private upgradeAskedFor(res: Head): boolean {
    const to = (header(res, 'upgrade') ?? '').trim().toLowerCase();
    return !!to && !!this.upgrade && this.upgrade.split(',').some((p) => p.trim() === to);
  }

  private fail(err: Error): void {
    const sink = this.sink;
    this.sink = null;
    this.dead = true;
    this.socket.destroy();
    sink?.onError(err, this.headSent);
  }

  private onClose(err: Error | null): void {
    if (this.dead && !this.sink) return;
    this.dead = true;
    if (!this.sink) return;
    if (this.state === BODY_UNTIL_CLOSE && !err) {
      this.finish(false);
      return;
    }
    if (this.state === TUNNEL) {
      const sink = this.sink;
      this.sink = null;
      sink.onEnd(false);
      return;
    }
    this.fail(err ?? new Error('upstream closed the connection'));
  }

  resume(): void {
    this.socket.resume();
  }

  /** Gives up on the current exchange (a timeout, a response about to be retried): no callback follows. */
  abandon(): void {
    this.sink = null;
    this.dead = true;
    this.socket.destroy();
  }
}
