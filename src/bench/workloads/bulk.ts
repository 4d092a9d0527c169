// SPDX-License-Identifier: Apache-2.0
/** Bulk transfer over one connection (iperf3 from Debian): Gbit/s. */
import { ADDR, PORTS } from '../testbed.ts';
import { type Workload, wholeSeconds } from './types.ts';

interface Iperf3Json {
  error?: string;
  end?: { sum_received?: { bytes: number; bits_per_second: number }; sum_sent?: { retransmits?: number } };
}

export const bulk: Workload = {
  name: 'bulk',
  title: 'bulk transfer, one connection',
  service: 'bulk',
  headline: { metric: 'gbps', label: 'Gbit/s', higherIsBetter: true },
  // The bulk port is declared tcp in both of our proxy's modes: the two would measure the same path.
  skip: (mode) => (mode.engine === 'kernmesh-tcp' ? 'the bulk port is tcp in both of our proxy\'s modes: same path as the L7 mode' : null),
  warmup: async () => {},
  run: async (ctx) => {
    const seconds = wholeSeconds(ctx.seconds);
    // --omit: the first seconds (slow start, the proxy's first compile) are left out of the figure.
    const omit = Math.round(ctx.warmupSeconds);
    const args = ['-c', ADDR.vip, '-p', String(PORTS.bulk), '-t', String(seconds), '-O', String(omit), '-J'];
    const proc = await ctx.client('iperf3', 'iperf3', args, (seconds + omit) * 1000 + 30_000);
    const out = JSON.parse(proc.stdout) as Iperf3Json;
    const sum = out.end?.sum_received;
    if (out.error || !sum) throw new Error(`iperf3: ${out.error ?? 'no summary'}`);
    return { metrics: { gbps: sum.bits_per_second / 1e9, retransmits: out.end?.sum_sent?.retransmits ?? 0 }, bytes: sum.bytes };
  },
};
