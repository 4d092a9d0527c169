// SPDX-License-Identifier: Apache-2.0
/**
 * Bytes to a one-byte string. Buffer#latin1Slice is the binding that
 * toString('latin1', start, end) ends in, without its argument
 * normalisation; it is not in Node's typings, but undici and Node's own http
 * parser bindings rely on it. It runs for every header line, twice per
 * proxied request.
 */
type Latin1Slicer = Buffer & { latin1Slice(start: number, end: number): string };

export function latin1(buf: Buffer, start: number, end: number): string {
  return (buf as Latin1Slicer).latin1Slice(start, end);
}
