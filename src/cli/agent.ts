// SPDX-License-Identifier: Apache-2.0
/** `kernmesh agent --config FILE`: runs the node agent until SIGTERM or SIGINT. */
import type { Command } from 'commander';
import { Agent } from '../agent/agent.ts';
import { readAgentConfig } from '../agent/config.ts';

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: mesh sync from Redis, the datapath, and the proxy')
    .requiredOption('-c, --config <file>', 'agent configuration (YAML)')
    .action(async (opts: { config: string }) => {
      const agent = new Agent(readAgentConfig(opts.config));
      await agent.start();
      await new Promise<void>((resolve) => {
        // Stop leaves the pins: a restarted agent picks up where this one was (kernmesh datapath cleanup removes them).
        const stop = () => void agent.stop().then(resolve);
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}
