// SPDX-License-Identifier: Apache-2.0
/**
 * A proxy worker's log lines go to the primary over IPC, which writes them
 * with its own logger: the agent's output stays one stream of whole lines.
 * Workers writing to the stdout they inherit would interleave with each other
 * and with the primary: pino batches lines into writes of up to 16 KiB, and a
 * write to a pipe is only kept whole up to PIPE_BUF (4 KiB). The lines are
 * formatted here, so the primary only copies bytes.
 */
import type { DestinationStream } from 'pino';

/** What a worker sends: lines in pino's format, each ending in a newline. */
export interface LogLines {
  type: 'log';
  lines: string;
}

/** Past this, a batch goes at once instead of at the end of the event-loop turn. */
const BATCH_CHARS = 64 * 1024;

/**
 * Log text a worker holds at most, in characters (JSON lines: about as many
 * bytes): pending here plus sent but not yet taken
 * by the IPC channel. process.send never refuses a message; when the primary
 * reads slower than the worker logs (its stdout blocked, a slow log
 * collector) the channel's queue would grow until the worker ran out of
 * memory, taking its traffic down with it. Past this, lines are dropped and
 * counted, and the count is logged once the channel has caught up.
 */
const MAX_HELD_CHARS = 32 * 1024 * 1024;

export interface ForwardedLogOptions {
  maxHeldChars?: number;
  /** Told how many lines were dropped, once there is room again (to log it). */
  onDropped?: (lines: number) => void;
}

export class ForwardedLog implements DestinationStream {
  private pending = '';
  private scheduled = false;
  /** Chars sent whose send callback has not run yet. */
  private inFlight = 0;
  /** Lines dropped since the last report. */
  private dropped = 0;
  private readonly maxHeld: number;
  private readonly onDropped: (lines: number) => void;
  private readonly send: (m: LogLines, done?: (err: Error | null) => void) => boolean;

  constructor(send: (m: LogLines, done?: (err: Error | null) => void) => boolean, options: ForwardedLogOptions = {}) {
    this.send = send;
    this.maxHeld = options.maxHeldChars ?? MAX_HELD_CHARS;
    this.onDropped = options.onDropped ?? (() => {});
  }

  /** Lines dropped and not reported yet. */
  get droppedLines(): number {
    return this.dropped;
  }

  /** pino's destination: called with each formatted line. */
  write(line: string): void {
    if (this.inFlight + this.pending.length + line.length > this.maxHeld) {
      this.dropped++;
      return;
    }
    this.pending += line;
    if (this.pending.length >= BATCH_CHARS) this.flush();
    else if (!this.scheduled) {
      // One IPC message per event-loop turn, not per request.
      this.scheduled = true;
      setImmediate(this.flushScheduled);
    }
  }

  private readonly flushScheduled = () => {
    this.scheduled = false;
    this.flush();
  };

  /**
   * Sends what is pending now. Called before the worker answers any message
   * too, so lines of requests already served reach the primary before that
   * answer does (IPC keeps order). done runs once the channel took the lines.
   */
  flush(done?: () => void): void {
    if (!this.pending) return done?.();
    const lines = this.pending;
    this.pending = '';
    this.inFlight += lines.length;
    // Sent to a primary that is gone, they are dropped: the callback gets the error, and the worker is exiting (see 'disconnect').
    this.send({ type: 'log', lines }, () => {
      this.inFlight -= lines.length;
      // Reported once half the room is free again, so the report itself is not dropped.
      if (this.dropped > 0 && this.inFlight + this.pending.length < this.maxHeld / 2) {
        const n = this.dropped;
        this.dropped = 0;
        this.onDropped(n);
      }
      done?.();
    });
  }
}
