// SPDX-License-Identifier: Apache-2.0
/** Mesh-wide settings: one object, named "mesh". */
import { z } from 'zod';
import { cidr, port, positiveDuration } from './common.ts';

export const MeshSettingsSpec = z
  .object({
    capture: z
      .object({
        namespaceLabel: z.string().default('kernmesh.io/capture').describe('namespaces with this label set to "enabled" are captured'),
        excludedPorts: z.array(port).default([]),
        excludedCidrs: z.array(cidr).default([]),
        inboundPorts: z
          .array(port)
          .default([])
          .describe("the ports whose arriving connections go through the proxy's inbound side, for pods without the kernmesh.io/inbound-ports annotation (default: none)"),
      })
      .strict()
      .default({ namespaceLabel: 'kernmesh.io/capture', excludedPorts: [], excludedCidrs: [], inboundPorts: [] }),
    failMode: z
      .enum(['open', 'closed'])
      .default('open')
      .describe('eBPF mode, when the proxy is down: leave connects alone, or refuse them (iptables mode always refuses: REDIRECT cannot tell)'),
    accessLog: z
      .object({ sampling: z.number().min(0).max(1).default(1) })
      .strict()
      .default({ sampling: 1 }),
    defaultTimeouts: z.object({ connect: positiveDuration.default('1s'), request: positiveDuration.default('15s') }).strict().default({ connect: '1s', request: '15s' }),
  })
  .strict();
