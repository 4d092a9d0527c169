// SPDX-License-Identifier: Apache-2.0
/** How traffic is routed, balanced and made resilient. */
import { z } from 'zod';
import { duration, labels, percent, positiveDuration, port, serviceRef, stringMatch } from './common.ts';

export const RetryOn = z.enum(['connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-status-codes']);

export const RetryPolicy = z
  .object({
    attempts: z.number().int().min(0).max(10).default(2),
    perTryTimeout: positiveDuration.optional(),
    retryOn: z
      .array(RetryOn)
      .default(['connect-failure', 'reset', 'gateway-error'])
      .describe("Envoy's meanings: 5xx also retries a failed connect, a reset and a per-try timeout; gateway-error 502/503/504, a failed connect and a per-try timeout; reset also a per-try timeout"),
    retriableStatusCodes: z.array(z.number().int().min(100).max(599)).default([]),
    backoff: z.object({ base: duration.default('25ms'), max: duration.default('250ms') }).strict().default({ base: '25ms', max: '250ms' }),
  })
  .strict();

export const FaultInjection = z
  .object({
    delay: z.object({ percent, fixed: duration }).strict().optional(),
    abort: z.object({ percent, status: z.number().int().min(200).max(599) }).strict().optional(),
  })
  .strict();

export const Mirror = z.object({ service: serviceRef, percent: percent.default(100) }).strict();

export const RouteMatch = z
  .object({
    path: stringMatch.optional(),
    method: z.string().regex(/^[A-Z]+$/).optional(),
    headers: z.record(z.string(), z.union([stringMatch, z.object({ present: z.boolean() }).strict()])).optional(),
    query: z.record(z.string(), stringMatch).optional(),
    host: stringMatch.optional(),
  })
  .strict();

export const Destination = z
  .object({
    service: serviceRef.optional().describe("default: the route's service"),
    subset: z.string().optional().describe('a subset defined by the destination ClusterPolicy'),
    port: port.optional(),
    weight: z.number().int().min(0).max(1_000_000).default(1),
  })
  .strict();

export const RouteAction = z.union([
  z.object({ split: z.array(Destination).min(1) }).strict(),
  z.object({ redirect: z.object({ host: z.string().optional(), path: z.string().optional(), code: z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)]).default(302) }).strict() }).strict(),
  z.object({ directResponse: z.object({ status: z.number().int().min(100).max(599), body: z.string().default('') }).strict() }).strict(),
]);

export const RouteRule = z
  .object({
    name: z.string().optional(),
    match: z.array(RouteMatch).default([]).describe('any one matching selects the rule; empty matches everything'),
    action: RouteAction,
    rewrite: z
      .object({
        prefix: z.string().optional().describe("replaces what the rule matched of the path: a prefix match's prefix, an exact match's whole path, else the leading /"),
        host: z.string().optional(),
      })
      .strict()
      .optional(),
    timeout: positiveDuration.optional(),
    retries: RetryPolicy.optional(),
    fault: FaultInjection.optional(),
    mirror: Mirror.optional(),
  })
  .strict();

export const RouteSpec = z
  .object({
    service: serviceRef.describe('whose traffic this routes'),
    port: port.optional().describe('the service port whose requests these rules route (default: every port)'),
    rules: z.array(RouteRule).min(1).describe('first match wins'),
  })
  .strict();

export const ClusterPolicySpec = z
  .object({
    service: serviceRef,
    subsets: z.array(z.object({ name: z.string().min(1), labels }).strict()).default([]),
    loadBalancer: z
      .object({
        type: z.enum(['round_robin', 'least_request', 'random', 'ring_hash', 'maglev']).default('round_robin'),
        hashOn: z.union([z.object({ header: z.string() }).strict(), z.object({ cookie: z.string() }).strict(), z.object({ sourceIp: z.literal(true) }).strict()]).optional(),
        locality: z.object({ enabled: z.boolean().default(true), failover: z.array(z.object({ from: z.string(), to: z.string() }).strict()).default([]) }).strict().optional(),
      })
      .strict()
      .default({ type: 'round_robin' }),
    connectionPool: z
      .object({
        maxConnections: z
          .number()
          .int()
          .min(1)
          .default(1024)
          .describe('upstream connections the service may hold open, idle ones included; past it an HTTP/1.1 request waits for one to come free (a pending request), an HTTP/2 one that needs a new session gets 503 (UO)'),
        maxPendingRequests: z
          .number()
          .int()
          .min(1)
          .default(1024)
          .describe("requests waiting for an upstream connection (being opened, or to come free under maxConnections), each for at most its route's timeout; past it, 503 (UO). Istio's http1MaxPendingRequests"),
        maxRequests: z.number().int().min(1).default(1024).describe('requests under way to the service; past it, 503 (UO)'),
        maxRetries: z.number().int().min(0).default(3),
        idleTimeout: positiveDuration.default('60s').describe('an upstream HTTP connection (HTTP/1.1 keep-alive or h2c session) unused this long is closed'),
      })
      .strict()
      .optional(),
    outlierDetection: z
      .object({
        consecutive5xx: z.number().int().min(1).default(5),
        consecutiveGatewayErrors: z.number().int().min(1).default(5),
        interval: positiveDuration.default('10s').describe("each interval an endpoint goes without being ejected takes one off the count that lengthens its next ejection (Envoy's)"),
        baseEjectionTime: duration.default('30s').describe('an ejection lasts this times the number of ejections the endpoint has on record'),
        maxEjectionTime: duration.default('300s').describe('the longest one ejection lasts (at least baseEjectionTime)'),
        maxEjectionPercent: percent.default(10),
      })
      .strict()
      .optional(),
    timeouts: z
      .object({
        connect: positiveDuration.optional().describe('to establish an upstream connection, HTTP or TCP (default: MeshSettings.defaultTimeouts.connect)'),
        request: positiveDuration.optional().describe("a request's whole exchange, retries included (default: MeshSettings.defaultTimeouts.request)"),
        idle: positiveDuration.optional().describe('a connection proxied as TCP with no bytes either way this long is closed (default 1h)'),
      })
      .strict()
      .optional(),
    retries: RetryPolicy.optional(),
    retryBudget: z
      .object({
        percent: percent.default(20).describe('retries in flight may be at most this share of the active requests'),
        minRetryConcurrency: z.number().int().min(0).optional().describe("but this many retries in flight are always allowed (Envoy's min_retry_concurrency; default 3)"),
        minRetriesPerSecond: z.number().int().min(0).optional().describe('the old name of minRetryConcurrency, still read'),
      })
      .strict()
      .refine((b) => b.minRetryConcurrency === undefined || b.minRetriesPerSecond === undefined, { message: 'set minRetryConcurrency only (minRetriesPerSecond is its old name)' })
      .optional(),
  })
  .strict();
