// SPDX-License-Identifier: Apache-2.0
/**
 * The probe client: runs as a workload (inside a scratch cgroup and netns),
 * connects, sends frames and checks that each comes back intact.
 *
 *   node client.js '{"host":"10.96.0.10","port":80,"sizes":[65536]}'
 *   node client.js '{"host":"10.96.0.10","port":80,"interactive":true}'   (stdin: one size per line)
 *
 * Prints one JSON line per frame: { ok, role, info, bytes } or { ok: false, error, code }.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Socket, connect } from 'node:net';
import { createInterface } from 'node:readline';
import { FRAME_MAGIC } from './echo.ts';

interface Args {
  host: string;
  port: number;
  sizes?: number[];
  interactive?: boolean;
  /** SO_MARK the socket (needs the native addon and CAP_NET_ADMIN). */
  mark?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;

function out(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function open(): Promise<Socket> {
  let socket: Socket;
  if (args.mark) {
    const { addon } = await import('../native.ts');
    const fd = addon().markedSocket(args.host.includes(':') ? 6 : 4, args.mark);
    socket = new Socket({ fd, readable: true, writable: true }).connect(args.port, args.host);
  } else {
    socket = connect(args.port, args.host);
  }
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Reads "<ROLE> <json>\n" then exactly size bytes, hashing them. */
function exchange(socket: Socket, size: number): Promise<{ role: string; info: unknown; sha: string }> {
  const payload = randomBytes(Math.min(size, 1 << 20));
  const sent = createHash('sha256');
  const got = createHash('sha256');
  return new Promise((resolve, reject) => {
    let head = '';
    let role = '';
    let info: unknown;
    let received = 0;
    let headerDone = false;
    const onData = (chunk: Buffer) => {
      let data = chunk;
      if (!headerDone) {
        const nl = data.indexOf(10);
        if (nl < 0) {
          head += data.toString('latin1');
          return;
        }
        head += data.subarray(0, nl).toString('latin1');
        data = data.subarray(nl + 1);
        headerDone = true;
        const sp = head.indexOf(' ');
        role = head.slice(0, sp);
        info = JSON.parse(head.slice(sp + 1) || 'null');
      }
      got.update(data);
      received += data.length;
      if (received >= size) {
        socket.off('data', onData);
        socket.off('error', reject);
        socket.off('end', onEnd);
        const a = sent.digest('hex');
        const b = got.digest('hex');
        if (received !== size || a !== b) reject(new Error(`payload corrupted: sent ${size} bytes (${a}), got ${received} (${b})`));
        else resolve({ role, info, sha: a });
      }
    };
    const onEnd = () => reject(new Error(`connection closed after ${received} of ${size} bytes (header: ${head})`));
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('end', onEnd);
    if (size === 0) {
      socket.write(`${FRAME_MAGIC} 0\n`);
      return;
    }
    socket.write(`${FRAME_MAGIC} ${size}\n`);
    // Stream the payload in pieces of at most 1 MiB, honouring backpressure.
    let left = size;
    const pump = () => {
      while (left > 0) {
        const piece = payload.subarray(0, Math.min(left, payload.length));
        sent.update(piece);
        left -= piece.length;
        if (!socket.write(piece)) return void socket.once('drain', pump);
      }
    };
    pump();
  });
}

async function main(): Promise<void> {
  let socket: Socket;
  try {
    socket = await open();
  } catch (err) {
    out({ ok: false, stage: 'connect', error: (err as Error).message, code: (err as NodeJS.ErrnoException).code });
    process.exitCode = 1;
    return;
  }
  const frame = async (size: number) => {
    try {
      const r = await exchange(socket, size);
      out({ ok: true, role: r.role, info: r.info, bytes: size, local: `${socket.localAddress}:${socket.localPort}` });
    } catch (err) {
      out({ ok: false, stage: 'exchange', error: (err as Error).message });
      process.exitCode = 1;
    }
  };
  if (args.interactive) {
    for await (const line of createInterface({ input: process.stdin })) {
      if (line.trim()) await frame(Number(line.trim()));
    }
  } else {
    for (const size of args.sizes ?? [1]) await frame(size);
  }
  socket.end();
}

await main();
