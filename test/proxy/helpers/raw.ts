// SPDX-License-Identifier: Apache-2.0
/** A raw TCP client for what curl will not send: pipelines, smuggling attempts, upgrades. */
import { connect } from 'node:net';

/** Sends bytes, then collects everything until the server closes (or timeoutMs of silence). */
export function rawExchange(port: number, data: string | Buffer, timeoutMs = 1500): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    let timer = setTimeout(() => finish(false), timeoutMs);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed });
    };
    s.on('data', (c) => {
      text += c.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), timeoutMs);
    });
    s.on('end', () => finish(true));
    s.on('error', () => finish(true));
    s.write(data);
  });
}

/** Status codes of every response in a raw stream, in order. */
export function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}
