// SPDX-License-Identifier: Apache-2.0
/**
 * A script of this package by its path under src/ (or dist/, whichever is
 * running): found from this module, never from process.argv, which npx
 * points at a symlink.
 */
export function packageScript(fromSrc: string): string {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./${fromSrc}.${ext}`, import.meta.url).pathname;
}
