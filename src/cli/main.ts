#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
/** The `kernmesh` command: wiring only; each command lives in its own file. */
import { Command, CommanderError } from 'commander';
import { KmError } from '../errors.ts';
import { registerAgent } from './agent.ts';
import { registerBench } from './bench.ts';
import { registerCheck } from './check.ts';
import { registerConfigCommands } from './config-commands.ts';
import { registerController } from './controller.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
import { registerDatapath } from './datapath.ts';
import { registerDemo } from './demo.ts';
import { registerStatus } from './status.ts';
import { VERSION } from './version.ts';

const program = new Command()
  .name('kernmesh')
  .description('An eBPF-accelerated transparent interception service mesh')
  .version(VERSION, '-v, --version')
  .showHelpAfterError()
  .exitOverride();

program
  .command('version')
  .description('print the version')
  .action(() => console.log(VERSION));
registerCheck(program);
registerDatapath(program);
registerDemo(program);
registerConfigCommands(program);
registerAgent(program);
registerStatus(program);
registerController(program);
registerBench(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander has printed the problem (or the help/version asked for).
    process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  } else {
    const code = err instanceof KmError ? ` [${err.code}]` : '';
    console.error(`kernmesh: ${(err as Error).message}${code}`);
    process.exitCode = exitCodeFor(err);
  }
}
