// SPDX-License-Identifier: Apache-2.0
/**
 * Authorization, with Istio's semantics: any matching DENY refuses; then, if
 * any ALLOW policy applies to the service, the request must match one of its
 * rules. Sources are matched by workload ("namespace/name" or "name"),
 * namespace and identity.
 */
import type { Head } from '../http1/parse.ts';
import { pathOf } from '../routing/select.ts';
import type { StringMatcher } from '../routing/table.ts';
import type { Peer } from '../telemetry/metrics.ts';

export interface CompiledAuthzRule {
  workloads?: Set<string>;
  namespaces?: Set<string>;
  identities?: Set<string>;
  paths?: StringMatcher[];
  methods?: Set<string>;
  ports?: Set<number>;
}

export interface Authz {
  deny: CompiledAuthzRule[];
  /** null: no ALLOW policy applies, so everything not denied is allowed. */
  allow: CompiledAuthzRule[] | null;
}

/**
 * head null: a TCP connection. Then a rule's HTTP-only conditions (methods,
 * paths) make it match in a DENY policy and not match in an ALLOW one, as in
 * Istio: for TCP traffic such a rule always errs on the restrictive side.
 */
function ruleMatches(r: CompiledAuthzRule, source: Peer | null, head: Head | null, port: number, deny: boolean): boolean {
  if (r.workloads && !(source && (r.workloads.has(`${source.namespace}/${source.workload}`) || r.workloads.has(source.workload)))) return false;
  if (r.namespaces && !(source && r.namespaces.has(source.namespace))) return false;
  if (r.identities && !(source?.identity && r.identities.has(source.identity))) return false;
  if (r.ports && !r.ports.has(port)) return false;
  if (head === null) return deny || !(r.methods || r.paths);
  if (r.methods && !r.methods.has(head.method)) return false;
  if (r.paths) {
    const path = pathOf(head.target);
    if (!r.paths.some((m) => m(path))) return false;
  }
  return true;
}

/** Null when allowed; else why not (for the 403 body). head null: a TCP connection. */
export function denied(a: Authz | undefined, source: Peer | null, head: Head | null, port: number): string | null {
  if (!a) return null;
  if (a.deny.some((r) => ruleMatches(r, source, head, port, true))) return 'denied by an authorization policy';
  if (a.allow && !a.allow.some((r) => ruleMatches(r, source, head, port, false))) return 'not allowed by any authorization policy';
  return null;
}

const fromSource = (r: CompiledAuthzRule) => !!(r.workloads || r.namespaces || r.identities);

/**
 * Authorization at the destination (the inbound side). Callers arrive from
 * the node's address, so who they are is not known here: rules about the
 * source are the calling pod's proxy's to enforce (it knows its own
 * workload), and the destination enforces what depends on the request
 * alone: source-free DENY rules, and the ALLOW rules when none of them is
 * about the source.
 */
export function deniedAtDestination(a: Authz | undefined, head: Head | null, port: number): string | null {
  if (!a) return null;
  if (a.deny.some((r) => !fromSource(r) && ruleMatches(r, null, head, port, true))) return 'denied by an authorization policy';
  if (a.allow && !a.allow.some(fromSource) && !a.allow.some((r) => ruleMatches(r, null, head, port, false))) return 'not allowed by any authorization policy';
  return null;
}
