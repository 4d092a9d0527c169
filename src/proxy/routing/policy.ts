// SPDX-License-Identifier: Apache-2.0
/** Resilience settings compiled from ClusterPolicy, Route rules and MeshSettings, in milliseconds. */
import { durationMs } from '../../config/model/common.ts';

export interface RetryPolicy {
  attempts: number;
  perTryTimeoutMs: number;
  onConnectFailure: boolean;
  onReset: boolean;
  /** An attempt that outlived perTryTimeout is tried again. */
  onPerTryTimeout: boolean;
  on5xx: boolean;
  onGatewayError: boolean;
  statuses: Set<number>;
  baseMs: number;
  maxMs: number;
}

export interface ClusterLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

export interface ServicePolicy {
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** An upstream HTTP connection (HTTP/1.1 keep-alive, or an h2c session) unused this long is closed (connectionPool.idleTimeout). */
  poolIdleTimeoutMs: number;
  /** A connection proxied as TCP with no bytes either way this long is closed, both sides (timeouts.idle). */
  tcpIdleTimeoutMs: number;
  retry: RetryPolicy | null;
  limits: ClusterLimits;
  /** Retries may add at most this share of active requests (a retry budget), but always minRetries. */
  budgetPercent: number;
  budgetMinRetries: number;
}

type Spec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- validated by the config layer

export const DEFAULT_POLICY: ServicePolicy = {
  connectTimeoutMs: 1000,
  requestTimeoutMs: 15_000,
  poolIdleTimeoutMs: 60_000,
  // Istio's default for TCP connections (connectionPool.tcp.idleTimeout).
  tcpIdleTimeoutMs: 3_600_000,
  retry: null,
  limits: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 },
  budgetPercent: 20,
  budgetMinRetries: 3,
};

export function compileRetry(r: Spec | undefined): RetryPolicy | null {
  if (!r) return null;
  const on = new Set<string>((r.retryOn as string[]) ?? ['connect-failure', 'reset', 'gateway-error']);
  // Envoy's meanings: 5xx also covers no answer at all (a failed connect, a reset, a per-try timeout);
  // gateway-error covers what a proxy reports as 502/503/504 (a failed connect, a per-try timeout).
  const any5xx = on.has('5xx');
  const gateway = on.has('gateway-error');
  const backoff = (r.backoff as Spec) ?? {};
  return {
    attempts: (r.attempts as number) ?? 2,
    perTryTimeoutMs: r.perTryTimeout ? durationMs(r.perTryTimeout as string) : 0,
    onConnectFailure: on.has('connect-failure') || any5xx || gateway,
    onReset: on.has('reset') || any5xx,
    onPerTryTimeout: on.has('reset') || any5xx || gateway,
    on5xx: any5xx,
    onGatewayError: gateway,
    statuses: new Set(on.has('retriable-status-codes') ? ((r.retriableStatusCodes as number[]) ?? []) : []),
    baseMs: durationMs((backoff.base as string) ?? '25ms'),
    maxMs: durationMs((backoff.max as string) ?? '250ms'),
  };
}

export function compilePolicy(cp: Spec | undefined, mesh: Spec | undefined): ServicePolicy {
  const defaults = (mesh?.defaultTimeouts as Spec) ?? {};
  const t = (cp?.timeouts as Spec) ?? {};
  const pool = (cp?.connectionPool as Spec) ?? {};
  const budget = (cp?.retryBudget as Spec) ?? {};
  return {
    connectTimeoutMs: durationMs((t.connect as string) ?? (defaults.connect as string) ?? '1s'),
    requestTimeoutMs: durationMs((t.request as string) ?? (defaults.request as string) ?? '15s'),
    poolIdleTimeoutMs: pool.idleTimeout ? durationMs(pool.idleTimeout as string) : DEFAULT_POLICY.poolIdleTimeoutMs,
    tcpIdleTimeoutMs: t.idle ? durationMs(t.idle as string) : DEFAULT_POLICY.tcpIdleTimeoutMs,
    retry: compileRetry(cp?.retries as Spec | undefined),
    limits: {
      maxConnections: (pool.maxConnections as number) ?? DEFAULT_POLICY.limits.maxConnections,
      maxPendingRequests: (pool.maxPendingRequests as number) ?? DEFAULT_POLICY.limits.maxPendingRequests,
      maxRequests: (pool.maxRequests as number) ?? DEFAULT_POLICY.limits.maxRequests,
      maxRetries: (pool.maxRetries as number) ?? DEFAULT_POLICY.limits.maxRetries,
    },
    budgetPercent: (budget.percent as number) ?? DEFAULT_POLICY.budgetPercent,
    // minRetriesPerSecond: the field's old name, in manifests and stored objects from before the rename.
    budgetMinRetries: (budget.minRetryConcurrency as number) ?? (budget.minRetriesPerSecond as number) ?? DEFAULT_POLICY.budgetMinRetries,
  };
}

/**
 * The retry budget: one more retry may start while the retries in flight stay
 * under max(the minimum, budgetPercent of the active requests) and under
 * maxRetries (no retry storms).
 */
export function retryBudgetAllows(policy: ServicePolicy, live: { active: number; retries: number }): boolean {
  const allowed = Math.max(policy.budgetMinRetries, Math.floor((live.active * policy.budgetPercent) / 100), 0);
  return live.retries < Math.min(allowed, policy.limits.maxRetries);
}

/** Whether a response status asks for another try under this policy. */
export function retriableStatus(p: RetryPolicy, status: number): boolean {
  return (p.on5xx && status >= 500) || (p.onGatewayError && (status === 502 || status === 503 || status === 504)) || p.statuses.has(status);
}

/** Exponential backoff with full jitter (AWS's "full jitter"): spreads retries out. */
export function backoffMs(p: RetryPolicy, attempt: number): number {
  return Math.random() * Math.min(p.maxMs, p.baseMs * 2 ** (attempt - 1));
}
