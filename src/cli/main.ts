#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
/** The `kernmesh` command: wiring only; each command lives in its own file. */
import { Command } from 'commander';
import { KmError } from '../errors.ts';
import { registerCheck } from './check.ts';
import { registerDatapath } from './datapath.ts';
import { registerDemo } from './demo.ts';
import { VERSION } from './version.ts';

const program = new Command()
  .name('kernmesh')
  .description('An eBPF-accelerated transparent interception service mesh')
  .version(VERSION, '-v, --version')
  .showHelpAfterError();

program
  .command('version')
  .description('print the version')
  .action(() => console.log(VERSION));
registerCheck(program);
registerDatapath(program);
registerDemo(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = err instanceof KmError ? ` [${err.code}]` : '';
  console.error(`kernmesh: ${(err as Error).message}${code}`);
  process.exitCode = err instanceof KmError ? 2 : 1;
}
