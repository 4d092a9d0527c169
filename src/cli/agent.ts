// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh agent --config FILE`: runs the node agent until SIGTERM or SIGINT.
 * `kernmesh drain`: asks the running agent to stop intercepting (the DaemonSet's preStop).
 */
import type { Command } from 'commander';
import { Agent } from '../agent/agent.ts';
import { readAgentConfig } from '../agent/config.ts';

/** What undoes a drain (`kernmesh status` names the command for the node). */
const UNDRAIN = 'to intercept again, restart the agent: on Kubernetes delete its pod (the DaemonSet starts a new one), else stop its `kernmesh agent` process and start it again';

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: mesh sync from Redis, the Kubernetes watch, the datapath, and the proxy')
    .requiredOption('-c, --config <file>', 'agent configuration (YAML)')
    .action(async (opts: { config: string }) => {
      // Every problem of the file is named before anything starts (exit 3); the host's are checked first thing in start (exit 6).
      const config = readAgentConfig(opts.config);
      const agent = new Agent(config, undefined, opts.config);
      await agent.start();
      await new Promise<void>((resolve) => {
        // Without detachOnStop, stop leaves the pins for a restarted agent (kernmesh datapath cleanup removes them);
        // with it (a DaemonSet pod going away), the programs are detached and the pins removed.
        const stop = () => void agent.stop({ detach: config.detachOnStop }).then(resolve);
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });

  program
    .command('drain')
    .description("tell this node's agent to stop intercepting new connections and remove its programs and pins (a preStop hook)")
    .option('--admin <host:port>', "the agent's admin address", '127.0.0.1:15000')
    .action(async (opts: { admin: string }) => {
      let res: Response;
      try {
        res = await fetch(`http://${opts.admin}/drain`, { method: 'POST', signal: AbortSignal.timeout(20_000) });
      } catch (err) {
        throw new Error(`no agent answers at ${opts.admin} (${(err as Error).cause ? ((err as Error).cause as Error).message : (err as Error).message}): is it running, and is --admin its adminPort?`);
      }
      const text = await res.text();
      if (!res.ok) throw new Error(`the agent refused to drain (${res.status}): ${text.trim()}`);
      process.stdout.write(text);
      // Nothing in a running agent attaches again after a drain: only a new agent process does.
      process.stdout.write(`${UNDRAIN}\n`);
    });
}
