// SPDX-License-Identifier: Apache-2.0
/**
 * Follows the framing of a chunked body without copying it: the proxy
 * forwards the bytes as they are and only needs to know where the body ends
 * (and that every chunk size is well formed).
 */
import { HttpParseError, TOKEN } from './parse.ts';

// Scanner states (plain numbers: the hot loop switches on them).
const State = {
  Size: 0,
  SizeLf: 1,
  Ext: 2,
  Data: 3,
  DataCr: 4,
  DataLf: 5,
  Trailer: 6,
  TrailerLf: 7,
  TrailerName: 8,
  TrailerValue: 9,
  TrailerLineLf: 10,
  Done: 11,
} as const;
type StateValue = (typeof State)[keyof typeof State];

const MAX_SIZE_DIGITS = 15;

export class ChunkedScanner {
  private state: StateValue = State.Size;
  private remaining = 0;
  private digits = 0;
  private trailerBytes = 0;

  /** Counts trailer bytes, refusing past 16 KiB. */
  private trailer(n: number): void {
    if ((this.trailerBytes += n) > 16384) throw new HttpParseError(431, 'trailers too large');
  }

  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Consumes bytes of buf from start; returns how many belong to the body
   * (the rest, if any, is the next message). With `data`, the chunks' data
   * bytes are pushed onto it as [start, end) pairs (to take the framing off).
   */
  scan(buf: Buffer, start = 0, data?: number[]): number {
    let i = start;
    const n = buf.length;
    while (i < n && this.state !== State.Done) {
      const c = buf[i]!;
      switch (this.state) {
        case State.Size: {
          const v = hex(c);
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) throw new HttpParseError(400, 'chunk size too large');
            this.remaining = this.remaining * 16 + v;
          } else if (this.digits === 0) {
            throw new HttpParseError(400, 'bad chunk size');
          } else if (c === 13) {
            this.state = State.SizeLf;
          } else if (c === 59 /* ; */) {
            this.state = State.Ext;
          } else {
            throw new HttpParseError(400, 'bad chunk size');
          }
          i++;
          break;
        }
        case State.Ext:
          if (c === 13) this.state = State.SizeLf;
          else if (c < 32 && c !== 9) throw new HttpParseError(400, 'bad chunk extension');
          i++;
          break;
        case State.SizeLf:
          if (c !== 10) throw new HttpParseError(400, 'chunk size line must end with CRLF');
          i++;
          this.digits = 0;
          this.state = this.remaining === 0 ? State.Trailer : State.Data;
          break;
        case State.Data: {
          const take = Math.min(this.remaining, n - i);
          if (data !== undefined && take > 0) data.push(i, i + take);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = State.DataCr;
          break;
        }
        case State.DataCr:
          if (c !== 13) throw new HttpParseError(400, 'chunk data must end with CRLF');
          this.state = State.DataLf;
          i++;
          break;
        case State.DataLf:
          if (c !== 10) throw new HttpParseError(400, 'chunk data must end with CRLF');
          this.state = State.Size;
          i++;
          break;
        case State.Trailer:
          // Either the final CRLF, or a trailer field line: name ":" value CRLF, as strict as a head's
          // (RFC 9112 7.1.2). Anything else (a bare LF above all) could let the next request hide in the body.
          if (c === 13) this.state = State.TrailerLf;
          else if (TOKEN[c] === 1) this.state = State.TrailerName;
          else throw new HttpParseError(400, 'a trailer line must be a header field');
          this.trailer(1);
          i++;
          break;
        case State.TrailerLf:
          if (c !== 10) throw new HttpParseError(400, 'chunked body must end with CRLF');
          this.state = State.Done;
          i++;
          break;
        case State.TrailerName:
          if (c === 58 /* : */) this.state = State.TrailerValue;
          else if (TOKEN[c] !== 1) throw new HttpParseError(400, 'a trailer name must be a token followed directly by ":"');
          this.trailer(1);
          i++;
          break;
        case State.TrailerValue:
          if (c === 13) this.state = State.TrailerLineLf;
          else if ((c < 32 && c !== 9) || c === 127) throw new HttpParseError(400, 'bad trailer value');
          this.trailer(1);
          i++;
          break;
        case State.TrailerLineLf:
          if (c !== 10) throw new HttpParseError(400, 'trailer lines must end with CRLF');
          this.state = State.Trailer;
          i++;
          break;
      }
    }
    return i - start;
  }
}

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}
