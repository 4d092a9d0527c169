// SPDX-License-Identifier: Apache-2.0
import test, { type ExecutionContext } from 'ava';
import { probeFeatures, sweepStaleScratch } from '../../../src/datapath/index.ts';

let swept = false;

/**
 * Registers a kernel test. KM_SKIP_KERNEL_TESTS=1 skips it on purpose (and
 * says so); otherwise a host that cannot run it fails it, never skips it.
 */
export function kernelTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (process.env.KM_SKIP_KERNEL_TESTS === '1') {
    test.skip(`${title} (KM_SKIP_KERNEL_TESTS=1)`, () => {});
    return;
  }
  const missing = probeFeatures().filter((f) => !f.ok);
  if (process.getuid?.() !== 0) missing.push({ name: 'root', ok: false, detail: 'not root', fix: 'run the kernel tests as root' });
  if (missing.length) {
    test.serial(title, (t) => {
      t.fail(`this host cannot run kernel tests: ${missing.map((m) => `${m.name}: ${m.fix ?? m.detail}`).join('; ')} (set KM_SKIP_KERNEL_TESTS=1 to skip them on purpose)`);
    });
    return;
  }
  if (!swept) {
    // A run killed mid-test (a timeout) could not clean up: do it for it.
    swept = true;
    const removed = sweepStaleScratch();
    if (removed.length) console.error(`removed leftovers of earlier runs: ${removed.join(', ')}`);
  }
  test.serial(title, fn);
}

