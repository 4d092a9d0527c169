// SPDX-License-Identifier: Apache-2.0
/** Who may call what, and how often. */
import { z } from 'zod';
import { port, positiveDuration, serviceRef, stringMatch } from './common.ts';

export const AuthorizationRule = z
  .object({
    from: z
      .object({
        workloads: z.array(z.string()).optional().describe('"namespace/name" or "name", where a workload\'s name is its app label (else its service\'s name)'),
        namespaces: z.array(z.string()).optional(),
        identities: z.array(z.string()).optional(),
      })
      .strict()
      .optional(),
    to: z
      .object({
        paths: z.array(stringMatch).optional(),
        methods: z.array(z.string()).optional(),
        ports: z.array(port).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const AuthorizationPolicySpec = z
  .object({
    service: serviceRef.optional().describe('the service it protects; default: every service in the namespace'),
    action: z.enum(['ALLOW', 'DENY']),
    rules: z.array(AuthorizationRule).min(1).describe('the action applies when any rule matches'),
  })
  .strict();

export const RateLimitSpec = z
  .object({
    service: serviceRef,
    route: z.string().optional().describe("the name of a Route rule (rules[].name, as in the access log's route field): limit only the requests it matched"),
    maxTokens: z.number().int().min(1),
    tokensPerFill: z.number().int().min(1).default(1),
    fillInterval: positiveDuration,
    perSource: z.boolean().default(false).describe('one bucket per calling workload'),
    quotas: z.record(z.string(), z.number().int().min(0)).optional().describe('per-caller request quotas per fill interval, by workload'),
  })
  .strict();
