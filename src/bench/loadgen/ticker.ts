// SPDX-License-Identifier: Apache-2.0
/**
 * The constant-rate generator's clock, on its own thread: it sleeps until
 * each request's intended send time (Atomics.wait takes fractional
 * milliseconds, unlike timers) and tells the I/O thread how many requests
 * are due. The I/O thread never waits for a timer, so the schedule does not
 * drift with its event loop; a late wake is still counted against latency,
 * which is measured from the intended time.
 */
import { parentPort, workerData } from 'node:worker_threads';

const { intervalMs, total } = workerData as { intervalMs: number; total: number };
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

// Started (and compiled) before the schedule begins: the I/O thread sends t0 once this says ready.
parentPort!.once('message', (t0: number) => {
  let due = 0;
  while (due < total) {
    const wait = t0 + due * intervalMs - nowMs();
    if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
    const now = nowMs();
    while (due < total && t0 + due * intervalMs <= now) due++;
    parentPort!.postMessage(due);
  }
});
parentPort!.postMessage('ready');
