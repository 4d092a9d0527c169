// SPDX-License-Identifier: Apache-2.0
/**
 * The gRPC status a local reply (a fault abort, a denial, no route, a
 * breaker) carries to a gRPC client, from the HTTP status it would have had:
 * gRPC's own HTTP-to-gRPC mapping (doc/http-grpc-status-mapping.md in
 * grpc/grpc), which Envoy's local replies follow too. One exception: 429
 * becomes RESOURCE_EXHAUSTED rather than UNAVAILABLE, so a rate-limited
 * client does not take it for a transient failure to retry at once (Envoy's
 * rate_limited_as_resource_exhausted).
 */
export function grpcStatusOfHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
      return 8; // RESOURCE_EXHAUSTED
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}
