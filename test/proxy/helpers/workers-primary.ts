// SPDX-License-Identifier: Apache-2.0
/**
 * A primary whose output a test reads: it starts proxy workers as the agent
 * does (their log lines written by this process's logger, to its stdout),
 * sets them up from the one message it is sent, and answers with the port.
 * It ends when its parent ends it or goes away; its workers follow (they exit on disconnect).
 */
import type { StoredObject } from '../../../src/config/store.ts';
import { freePort } from '../../../src/ports.ts';
import { ProxyWorkers, type WorkerSettings } from '../../../src/proxy/workers.ts';

const workers = await ProxyWorkers.start(2);
process.once('message', async (m: { settings: WorkerSettings; objects: StoredObject[]; service: string }) => {
  await workers.configure(m.settings);
  await workers.setObjects(1, m.objects);
  const port = await freePort();
  await workers.listen([{ port, host: '127.0.0.1', service: m.service }]);
  process.send!({ port, pids: workers.pids });
});
process.on('disconnect', () => process.exit(0));
