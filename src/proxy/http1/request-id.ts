// SPDX-License-Identifier: Apache-2.0
/**
 * x-request-id values for requests that arrive without one: random (version
 * 4) UUIDs, as Envoy makes them. They are formatted a batch at a time into
 * one string and handed out as slices of it: crypto.randomUUID builds each
 * id from some twenty string pieces, and on the proxy's hot path that was
 * the largest allocation of a request after its header strings.
 */
import { randomFillSync } from 'node:crypto';
import { latin1 } from './latin1.ts';

const BATCH = 256;
const ID_LENGTH = 36;
const HEX = Array.from({ length: 16 }, (_, i) => i.toString(16).charCodeAt(0));

const random = Buffer.alloc(16 * BATCH);
const text = Buffer.alloc(ID_LENGTH * BATCH);
let batch = '';
let next = BATCH;

function refill(): void {
  randomFillSync(random);
  let at = 0;
  for (let id = 0; id < BATCH; id++) {
    for (let i = 0; i < 16; i++) {
      let b = random[id * 16 + i]!;
      if (i === 6) b = (b & 0x0f) | 0x40; // version 4
      else if (i === 8) b = (b & 0x3f) | 0x80; // the RFC 9562 variant
      text[at++] = HEX[b >> 4]!;
      text[at++] = HEX[b & 15]!;
      if (i === 3 || i === 5 || i === 7 || i === 9) text[at++] = 45; // the dashes of 8-4-4-4-12
    }
  }
  batch = latin1(text, 0, text.length);
  next = 0;
}

/** A new random request id, "xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx" in lower-case hex. */
export function newRequestId(): string {
  if (next === BATCH) refill();
  const start = next++ * ID_LENGTH;
  return batch.slice(start, start + ID_LENGTH);
}
