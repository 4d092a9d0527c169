// SPDX-License-Identifier: Apache-2.0
/**
 * A loopback port whose connects hang: a listener (python3: Node accepts every
 * connection it can) with a backlog of 0 that never accepts, its one queue
 * slot taken by a filler connection, so the kernel drops further SYNs. This is
 * how an unreachable endpoint looks, without sending anything off the machine.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { type Socket, connect } from 'node:net';

const LISTENER = "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()\n";

export async function blackhole(t: ExecutionContext): Promise<number> {
  const child = spawn('python3', ['-c', LISTENER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const fillers: Socket[] = [];
  t.teardown(() => {
    for (const f of fillers) f.destroy();
    child.kill();
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
  });
  // Fill the accept queue until a connect no longer completes.
  for (let i = 0; i < 8; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const connected = await new Promise<boolean>((r) => {
      s.once('connect', () => r(true));
      setTimeout(() => r(false), 300);
    });
    if (!connected) return port;
  }
  throw new Error('could not fill the listen queue of the blackhole listener');
}
