// SPDX-License-Identifier: Apache-2.0
// ClusterPolicy and MeshSettings compiled into what the proxy enforces, from validated specs.
import test from 'ava';
import { MeshSettingsSpec } from '../../src/config/model/mesh.ts';
import { ClusterPolicySpec } from '../../src/config/model/traffic.ts';
import { compilePolicy, compileRetry } from '../../src/proxy/routing/policy.ts';

const mesh = MeshSettingsSpec.parse({ defaultTimeouts: { connect: '250ms', request: '7s' } });

test("the mesh's default connect timeout applies unless a ClusterPolicy sets its own", (t) => {
  const onlyRequest = compilePolicy(ClusterPolicySpec.parse({ service: 'a', timeouts: { request: '5s' } }), mesh);
  t.is(onlyRequest.connectTimeoutMs, 250);
  t.is(onlyRequest.requestTimeoutMs, 5000);
  t.is(compilePolicy(ClusterPolicySpec.parse({ service: 'a', timeouts: { connect: '2s' } }), mesh).connectTimeoutMs, 2000);
  t.is(compilePolicy(undefined, mesh).requestTimeoutMs, 7000, 'no ClusterPolicy: the mesh defaults');
});

test("retryOn values mean what they mean in Envoy", (t) => {
  const on = (...retryOn: string[]) => compileRetry({ retryOn })!;
  t.like(on('5xx'), { onConnectFailure: true, onReset: true, onPerTryTimeout: true, on5xx: true, onGatewayError: false });
  t.like(on('gateway-error'), { onConnectFailure: true, onReset: false, onPerTryTimeout: true, on5xx: false, onGatewayError: true });
  t.like(on('reset'), { onConnectFailure: false, onReset: true, onPerTryTimeout: true });
  t.like(on('connect-failure'), { onConnectFailure: true, onReset: false, onPerTryTimeout: false });
  t.like(on('retriable-status-codes'), { onConnectFailure: false, onReset: false, onPerTryTimeout: false });
});

test('retryBudget.minRetryConcurrency, or its old name minRetriesPerSecond, but not both', (t) => {
  const floor = (retryBudget: Record<string, number>) => compilePolicy(ClusterPolicySpec.parse({ service: 'a', retryBudget }), mesh).budgetMinRetries;
  t.is(floor({ minRetryConcurrency: 7 }), 7);
  t.is(floor({ minRetriesPerSecond: 0 }), 0, 'a manifest (or stored object) from before the rename keeps its value');
  t.is(floor({ percent: 50 }), 3);
  t.false(ClusterPolicySpec.safeParse({ service: 'a', retryBudget: { minRetryConcurrency: 1, minRetriesPerSecond: 2 } }).success);
});
