// SPDX-License-Identifier: Apache-2.0
/** What the agent sees of an interception mode, whichever it is. */
import type { Counters } from './codec.ts';
import type { DesiredStateInput } from './desired.ts';

export type Mode = 'ebpf' | 'iptables';

export interface ApplyOptions {
  /** Remove what is no longer desired. Off until the agent's first full sync. */
  prune?: boolean;
  /** Compute and return the plan; change nothing. */
  dryRun?: boolean;
}

export interface ApplyResult {
  /** One line per change, in the order made (or to be made, on a dry run). */
  plan: string[];
  applied: boolean;
}

export interface Interceptor {
  readonly mode: Mode;
  /** Make the kernel match the desired state; all-or-nothing. */
  apply(desired: DesiredStateInput, options?: ApplyOptions): Promise<ApplyResult>;
  /** Tell the datapath the proxy is alive. */
  heartbeat(): void;
  counters(): Counters;
  /** Stop; with detach, also remove everything from the kernel. */
  close(options?: { detach?: boolean }): Promise<void>;
}
