// SPDX-License-Identifier: Apache-2.0
/** Waiting in tests for what the proxy does in its own time (a timeout firing, a count settling). */

/** Polls cond every 10 ms for up to ms; true as soon as it holds. */
export async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}
