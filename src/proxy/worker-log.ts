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

export class ForwardedLog implements DestinationStream {
  private pending = '';
  private scheduled = false;
  private readonly send: (m: LogLines, done?: (err: Error | null) => void) => boolean;

  constructor(send: (m: LogLines, done?: (err: Error | null) => void) => boolean) {
    this.send = send;
  }

  /** pino's destination: called with each formatted line. */
  write(line: string): void {
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
    // Sent to a primary that is gone, they are dropped: the callback gets the error, and the worker is exiting (see 'disconnect').
    this.send({ type: 'log', lines }, () => done?.());
  }
}
