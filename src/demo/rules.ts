// SPDX-License-Identifier: Apache-2.0
/**
 * The demo's rules, as `kernmesh apply` would write them: a 90/10 canary on
 * reviews with retries, a rate limit on ratings (its traffic is sent at twice
 * the limit, so the limit shows), and DELETE denied on reviews.
 */
import type { MeshObject } from '../config/objects.ts';

export const RATINGS_LIMIT_PER_SECOND = 10;

const obj = (kind: MeshObject['kind'], name: string, namespace: string, spec: Record<string, unknown>): MeshObject => ({ apiVersion: 'kernmesh.io/v1', kind, metadata: { name, namespace }, spec });

export function demoRules(): MeshObject[] {
  return [
    obj('ClusterPolicy', 'reviews', 'shop', { service: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }], loadBalancer: { type: 'least_request' }, outlierDetection: { consecutive5xx: 5 } }),
    obj('Route', 'reviews', 'shop', { service: 'reviews', rules: [{ name: 'canary', action: { split: [{ subset: 'v1', weight: 90 }, { subset: 'v2', weight: 10 }] }, retries: { attempts: 2, retryOn: ['5xx', 'connect-failure'] }, timeout: '2s' }] }),
    obj('RateLimit', 'ratings', 'shop', { service: 'ratings', maxTokens: RATINGS_LIMIT_PER_SECOND, tokensPerFill: RATINGS_LIMIT_PER_SECOND, fillInterval: '1s' }),
    obj('AuthorizationPolicy', 'no-deletes', 'shop', { service: 'reviews', action: 'DENY', rules: [{ to: { methods: ['DELETE'] } }] }),
  ];
}
