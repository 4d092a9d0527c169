// SPDX-License-Identifier: Apache-2.0
/**
 * The selftest's wire protocol, spoken by a stand-in proxy or backend and by
 * the probe client. A frame is "KM1 <length>\n" and <length> bytes; the
 * server answers each with "<ROLE> <json>\n" and the same bytes, streamed
 * back as they arrive (so 16 MiB never sits in memory twice).
 */
import type { Server, Socket } from 'node:net';

export const FRAME_MAGIC = 'KM1';
const MAX_HEADER = 256;

/** The server's answer line: which role answered, and what it learned. */
export type Describe = (socket: Socket) => unknown;

export function serveEcho(server: Server, role: string, describe: Describe): void {
  server.on('connection', (socket) => {
    let header = '';
    let remaining = 0;
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      let data = chunk;
      while (data.length > 0) {
        if (remaining > 0) {
          const take = data.subarray(0, remaining);
          socket.write(take);
          remaining -= take.length;
          data = data.subarray(take.length);
          continue;
        }
        const nl = data.indexOf(10);
        if (nl < 0) {
          header += data.toString('latin1');
          if (header.length > MAX_HEADER) socket.destroy();
          return;
        }
        header += data.subarray(0, nl).toString('latin1');
        data = data.subarray(nl + 1);
        const [magic, len] = header.split(' ');
        header = '';
        if (magic !== FRAME_MAGIC || !/^\d+$/.test(len ?? '')) {
          socket.end(`ERROR bad frame\n`);
          return;
        }
        let info: unknown;
        try {
          info = describe(socket);
        } catch (err) {
          info = { error: (err as Error).message, code: (err as NodeJS.ErrnoException).code };
        }
        socket.write(`${role} ${JSON.stringify(info)}\n`);
        remaining = Number(len);
      }
    });
  });
}

/** The fd of an accepted socket, for originalDst(). */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no file descriptor');
  return fd;
}
