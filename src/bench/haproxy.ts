// SPDX-License-Identifier: Apache-2.0
/**
 * HAProxy's two parts in the bench, as configuration text:
 *
 * - the server pod: answers every HTTP/1.1 request with a fixed 200 and every
 *   gRPC call with a Trailers-Only OK (grpc-status 0), so that no slow
 *   backend hides what interception and proxy cost;
 * - the engine: HAProxy in place of our proxy, listening on the proxy port
 *   inside the client namespace. It does not read SO_ORIGINAL_DST: each run
 *   gives it a fixed backend (the server pod's address and the workload's
 *   port), which is what it would have found.
 */
import { ADDR, PORTS } from './testbed.ts';

export type ServiceKind = 'http' | 'grpc' | 'bulk';

const GLOBAL = ['global', '  nbthread 1', '  maxconn 4096'];
const TIMEOUTS = ['  timeout client 60s', '  timeout server 60s', '  timeout connect 5s'];

export function serverConfig(): string {
  return [
    ...GLOBAL,
    'defaults',
    '  mode http',
    ...TIMEOUTS,
    'frontend http',
    `  bind :${PORTS.http}`,
    '  http-request return status 200 content-type text/plain string "hello from the bench server\\n"',
    'frontend grpc',
    `  bind :${PORTS.grpc} proto h2`,
    // A Trailers-Only response: HEADERS with :status, content-type and grpc-status, END_STREAM.
    '  http-request return status 200 hdr grpc-status 0',
    '  http-after-response set-header content-type application/grpc',
    '  http-after-response del-header content-length',
    '',
  ].join('\n');
}

/** HAProxy as the mesh's proxy for one workload's service; clientNetns is a name under /run/netns. */
export function engineConfig(kind: ServiceKind, clientNetns: string): string {
  const port = kind === 'http' ? PORTS.http : kind === 'grpc' ? PORTS.grpc : PORTS.bulk;
  const h2 = kind === 'grpc' ? ' proto h2' : '';
  return [
    ...GLOBAL,
    'defaults',
    `  mode ${kind === 'bulk' ? 'tcp' : 'http'}`,
    ...TIMEOUTS,
    ...(kind === 'bulk' ? [] : ['  http-reuse always']),
    'frontend outbound',
    // The listening socket is made inside the client pod's namespace, by this process (so in the proxy cgroup).
    `  bind 127.0.0.1:${PORTS.proxy} namespace ${clientNetns}${h2}`,
    '  default_backend pod',
    'backend pod',
    `  server server ${ADDR.server}:${port}${h2}`,
    '',
  ].join('\n');
}
