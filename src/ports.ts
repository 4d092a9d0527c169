// SPDX-License-Identifier: Apache-2.0
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (for listeners that cannot take port 0 themselves). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}
