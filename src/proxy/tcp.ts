// SPDX-License-Identifier: Apache-2.0
/** Opaque TCP: a bidirectional pipe with half-close, byte counts and an idle timeout. */
import { type Socket, connect } from 'node:net';
import { timerMs } from './timer.ts';

export interface TcpStats {
  sent: number;
  received: number;
}

export interface PipeOptions {
  /** No bytes either way for this long closes both sides (default 1 h). */
  idleTimeoutMs?: number;
  /** The upstream connection must be up within this (default 1 s); otherwise the client is reset. */
  connectTimeoutMs?: number;
  onClose?: (s: TcpStats) => void;
  dial?: () => Socket;
}

export function pipeTcp(down: Socket, address: string, port: number, initial: Buffer | null, options: PipeOptions = {}): void {
  const stats: TcpStats = { sent: 0, received: 0 };
  if (down.destroyed) {
    options.onClose?.(stats);
    return;
  }
  // dial: a socket made elsewhere (the inbound path connects from inside a pod's network namespace).
  let up: Socket;
  try {
    up = options.dial ? options.dial() : connect({ host: address, port, noDelay: true, allowHalfOpen: true });
  } catch {
    // The dial could not make its socket (the pod's namespace is gone): the client is told by a reset.
    down.destroy();
    options.onClose?.(stats);
    return;
  }
  down.setNoDelay(true);
  const connectTimer = setTimeout(() => up.destroy(), timerMs(options.connectTimeoutMs ?? 1000));
  up.once('connect', () => clearTimeout(connectTimer));
  up.once('close', () => clearTimeout(connectTimer));
  let closed = 0;
  const done = () => {
    if (++closed === 2) options.onClose?.(stats);
  };
  if (initial) {
    stats.received += initial.length;
    up.write(initial);
  }
  down.on('data', (c: Buffer) => {
    stats.received += c.length;
    if (!up.write(c)) down.pause();
  });
  up.on('drain', () => down.resume());
  up.on('data', (c: Buffer) => {
    stats.sent += c.length;
    if (!down.write(c)) up.pause();
  });
  down.on('drain', () => up.resume());
  // Half-close: each side's FIN is passed on, and the other direction keeps flowing.
  down.on('end', () => up.end());
  up.on('end', () => down.end());
  down.on('close', () => {
    up.destroy();
    done();
  });
  up.on('close', () => {
    down.destroy();
    done();
  });
  down.on('error', () => up.destroy());
  up.on('error', () => down.destroy());
  down.resume();
  const idle = options.idleTimeoutMs ?? 3_600_000;
  down.setTimeout(idle, () => down.destroy());
}
