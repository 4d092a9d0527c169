// SPDX-License-Identifier: Apache-2.0
/**
 * Regular expressions from mesh objects (route matches on paths, headers,
 * query parameters and hosts) run on every request against input a client
 * chooses. A backtracking engine lets one pattern like `(a+)+b` pin a core
 * for seconds on a 30-byte path. Envoy answers that with RE2; here V8 does it:
 *
 * - apply accepts only patterns V8's linear-time engine can run (no
 *   backreferences, no lookahead, no inline modifiers: RE2 leaves the
 *   first two out too);
 * - the proxy compiles them for V8's usual engine, which is much faster on
 *   ordinary patterns (36x on a typical path pattern), and V8 switches a
 *   match to the linear engine once it backtracks too much.
 *
 * Both need V8 flags, set when this module loads (before any pattern here
 * is compiled); node:v8 documents setting flags at run time as unsupported
 * in general, so a test checks that these two take effect (regex.test.ts).
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--enable-experimental-regexp-engine');
setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

/** A whole-string match, as the proxy runs it. */
const anchored = (source: string) => `^(?:${source})$`;

/** Why a pattern cannot be used in a match, or undefined when it can. */
export function regexProblem(source: string): string | undefined {
  try {
    new RegExp(anchored(source));
  } catch (err) {
    return `must be a valid regular expression (${(err as Error).message.replace(/^Invalid regular expression: /, '')})`;
  }
  try {
    // 'l': V8's linear-time engine, which refuses what it cannot run in linear time.
    new RegExp(anchored(source), 'l');
  } catch {
    return 'cannot be matched in time linear in the input: leave out backreferences (\\1, \\k<name>), lookahead ((?=, (?!) and inline modifiers ((?i:), as with RE2 in Envoy and Istio';
  }
  return undefined;
}

/** The compiled whole-string matcher. A pattern that backtracks too much on some input finishes on the linear engine. */
export function compileRegex(source: string): RegExp {
  return new RegExp(anchored(source));
}
