// SPDX-License-Identifier: Apache-2.0
/** From a parsed request to where it goes: an upstream endpoint, or an answer given here. */
import type { ProxyCore } from './core.ts';
import type { Head } from './http1/parse.ts';
import type { Socket } from 'node:net';
import { endpointPort, endpointsOf, matchRule, pathOf, pickDestination, requestPort, serviceFor, servicePortAt, servicesByEndpoint } from './routing/select.ts';
import type { RoutingTable, ServiceInfo } from './routing/table.ts';

import type { CompiledRule, EndpointInfo } from './routing/table.ts';
import { denied, deniedAtDestination } from './policy/authz.ts';
import { roll } from './policy/fault.ts';
import type { Peer } from './telemetry/metrics.ts';

export type Target =
  | { kind: 'upstream'; address: string; port: number; host?: string; path?: string; service?: ServiceInfo; endpoint?: EndpointInfo; route?: string; rule?: CompiledRule; delayMs?: number; subset?: string | undefined; inbound?: InboundTarget }
  | { kind: 'local'; status: number; body: string; headers?: string; flags: string; service?: ServiceInfo; route?: string; inbound?: InboundTarget };

/**
 * A request waiting for the node's rate-limit tokens (a proxy worker asked
 * the agent for some, see node-limits.ts): route it again once `wait`
 * settles, passing `admitted` back, the services whose limits already
 * admitted it, so it is not counted twice.
 */
export type Pending = { kind: 'pending'; wait: Promise<void>; admitted: ReadonlySet<string> };

/** Routed again this many times, a request still waiting is refused as rate limited (a safety net: every wait admits someone). */
export const MAX_ADMISSION_ROUNDS = 16;

/**
 * What a retry passes as `admitted`: every service. A retry is the same
 * request, and (as in Envoy, whose rate limit filter runs once per request,
 * before the router retries) no rate limit counts it again.
 */
export const RETRY_ADMITTED: ReadonlySet<string> = new (class extends Set<string> {
  override has(): boolean {
    return true;
  }
})();

/** The answer to a request a rate limit refuses (shared: route() copies it into each target it makes). */
export const RATE_LIMITED: Refusal = { kind: 'local', status: 429, body: 'rate limited\n', flags: 'RL' };

/**
 * A socket made inside the pod's network namespace, connecting to the pod's
 * own address:port (where the client was going): the datapath lets that
 * connection through to the application instead of taking it again.
 */
export type InboundDial = (address: string, port: number) => Socket;

/**
 * The inbound side: the application in this pod. Only telemetry and
 * authorization look at its service; circuit breaking, retries and outlier
 * detection are the calling side's (a request counted on both sides of one
 * node's proxy would be counted twice).
 */
export interface InboundTarget {
  service?: ServiceInfo;
  workload: Peer;
  dial: InboundDial;
}

/** Where an inbound request goes: the application at the port it was sent to, unless authorization refuses it. */
export function inboundRoute(table: RoutingTable, local: { address: string; port: number }, head: Head, inbound: { workload: Peer; dial: InboundDial }): Target {
  // Every service this pod backs has its say; policies name service ports, so the one mapping to this target port.
  const services = servicesByEndpoint(table, local.address, local.port);
  for (const s of services) {
    const why = deniedAtDestination(s.authz, head, servicePortAt(table, s, local.address, local.port)?.port ?? local.port);
    if (why) return { kind: 'local', status: 403, body: `RBAC: access denied (${why})\n`, flags: 'RBAC', inbound: { ...inbound, service: s } };
  }
  const svc = services[0];
  return { kind: 'upstream', address: local.address, port: local.port, inbound: { ...inbound, ...(svc ? { service: svc } : {}) } };
}

/**
 * Where a mirrored copy of a request goes: an endpoint of the shadow service,
 * and the authority it is sent with (Envoy's convention: "-shadow" appended).
 * Null when the shadow is unknown or has no endpoint.
 */
export function mirrorTarget(core: ProxyCore, head: Head, serviceKey: string, peerIp: string): { service: ServiceInfo; address: string; port: number; host: string } | null {
  const svc = core.table.services.get(serviceKey);
  const ep = svc && core.balancer.pick(svc, svc.endpoints, head, peerIp);
  if (!svc || !ep) return null;
  return { service: svc, address: ep.address, port: endpointPort(ep, svc.ports[0]) || 80, host: `${head.host ?? serviceKey}-shadow` };
}

/**
 * A prefix rewrite replaces what the rule matched of the path, as Envoy's
 * prefix_rewrite does: a prefix match's prefix, an exact match's whole path,
 * and otherwise the leading "/" (Envoy's default match). The query stays.
 */
function rewritePrefix(rule: CompiledRule, target: string, prefix: string): string {
  const path = pathOf(target);
  const m = rule.matches.find((x) => x.pathPrefix !== undefined && path.startsWith(x.pathPrefix));
  if (m) return prefix + target.slice(m.pathPrefix!.length);
  if (rule.matches.some((x) => x.pathExact === path)) return prefix + target.slice(path.length);
  return prefix + target.slice(1);
}

/** Where to reach ep for the service port a request was sent to (the service's first port when that is not one of its own). */
function dialPort(svc: ServiceInfo, ep: EndpointInfo, port: number | undefined): number {
  const p = (port !== undefined && svc.ports.find((x) => x.port === port)) || svc.ports[0];
  return endpointPort(ep, p) || port || 80;
}

type Refusal = { kind: 'local'; status: number; body: string; flags: string };

/** A service's authorization for one request: the refusal to answer with, or null. */
function authzRefuses(svc: ServiceInfo, source: Peer | null, head: Head, port: number): Refusal | null {
  const why = denied(svc.authz, source, head, port);
  return why ? { kind: 'local', status: 403, body: `RBAC: access denied (${why})\n`, flags: 'RBAC' } : null;
}

/**
 * A service's rate limits for one request: null when they admit it (or
 * already did, in an earlier round), the refusal, or a wait for the node's
 * tokens.
 */
function limitRefuses(core: ProxyCore, svc: ServiceInfo, routeName: string | undefined, source: Peer | null, admitted: ReadonlySet<string> | undefined): Refusal | Promise<void> | null {
  if (!svc.rateLimits.length || admitted?.has(svc.key)) return null;
  const who = source ? `${source.namespace}/${source.workload}` : 'unknown';
  const a = core.admitter.admit(svc.rateLimits, routeName, who, Date.now());
  return a === true ? null : a === false ? RATE_LIMITED : a;
}

/** The services a waiting request has been admitted by: those before, and svc if its limits admitted it. */
function withAdmitted(admitted: ReadonlySet<string> | undefined, svc?: ServiceInfo): ReadonlySet<string> {
  const next = new Set(admitted);
  if (svc?.rateLimits.length) next.add(svc.key);
  return next;
}

/** admitted: a waiting request's (see Pending), when it is routed again. */
export function route(table: RoutingTable, origDst: { address: string; port: number } | null, bound: string | null, head: Head, core: ProxyCore, source: Peer | null = null, peerIp = '', admitted?: ReadonlySet<string>): Target | Pending {
  const svc = bound ? table.services.get(bound) : serviceFor(table, origDst, head.host);
  if (!svc) {
    // Not a mesh service: where the application was going, untouched (a passthrough).
    if (origDst) return { kind: 'upstream', address: origDst.address, port: origDst.port };
    return { kind: 'local', status: 404, body: `no route for host ${head.host ?? '(none)'}\n`, flags: 'NR' };
  }
  const rule = matchRule(svc, head, requestPort(svc, origDst, head));
  const routeName = rule?.name;
  // Policy, in Envoy's filter order: authorization, then rate limits, then faults.
  const refused = authzRefuses(svc, source, head, origDst?.port ?? svc.ports[0]?.port ?? 0) ?? limitRefuses(core, svc, routeName, source, admitted);
  if (refused instanceof Promise) return { kind: 'pending', wait: refused, admitted: withAdmitted(admitted) };
  if (refused) return { ...refused, service: svc, ...(routeName ? { route: routeName } : {}) };
  let delayMs: number | undefined;
  if (rule?.fault) {
    if (rule.fault.abort && roll(rule.fault.abort.percent)) return { kind: 'local', status: rule.fault.abort.status, body: 'fault filter abort\n', flags: 'FI', service: svc, ...(routeName ? { route: routeName } : {}) };
    if (rule.fault.delay && roll(rule.fault.delay.percent)) delayMs = rule.fault.delay.ms;
  }
  if (rule?.directResponse) return { kind: 'local', status: rule.directResponse.status, body: rule.directResponse.body, flags: '-', service: svc, ...(routeName ? { route: routeName } : {}) };
  if (rule?.redirect) {
    const loc = `http://${rule.redirect.host ?? head.host ?? ''}${rule.redirect.path ?? head.target}`;
    return { kind: 'local', status: rule.redirect.code, body: '', headers: `location: ${loc}\r\n`, flags: '-', service: svc };
  }
  const dest = rule?.split ? pickDestination(rule) : { service: svc.key, weight: 1 };
  const destSvc = dest.service === svc.key ? svc : table.services.get(dest.service);
  if (!destSvc) return { kind: 'local', status: 503, body: `service ${dest.service} is not known\n`, flags: 'NR', service: svc };
  const rewrittenPath = rule?.rewrite?.prefix !== undefined ? rewritePrefix(rule, head.target, rule.rewrite.prefix) : undefined;
  if (destSvc !== svc || rewrittenPath !== undefined) {
    // Where the request lands is checked as it will arrive there, as that service's own sidecar
    // would check it in Istio: a split to another service meets that service's authorization and
    // service-wide rate limits (its route-scoped ones name its own rules, not this one), and a
    // rewritten path meets the destination's authorization as rewritten, so neither a split nor a
    // rewrite walks around a DENY. (A request that waits here for the destination's tokens rolls its
    // fault and its split again when routed again: a second chance at either, rare and harmless.)
    const port = dest.port ?? (origDst && destSvc.ports.some((p) => p.port === origDst.port) ? origDst.port : destSvc.ports[0]?.port) ?? 0;
    const landing: Head = rewrittenPath === undefined ? head : Object.create(head, { target: { value: rewrittenPath } });
    const refusedThere = authzRefuses(destSvc, source, landing, port) ?? (destSvc !== svc ? limitRefuses(core, destSvc, undefined, source, admitted) : null);
    if (refusedThere instanceof Promise) return { kind: 'pending', wait: refusedThere, admitted: withAdmitted(admitted, svc) };
    if (refusedThere) return { ...refusedThere, service: destSvc, ...(routeName ? { route: routeName } : {}) };
  }
  const eps = endpointsOf(destSvc, dest.subset);
  const ep = core.balancer.pick(destSvc, eps, head, peerIp);
  if (!ep) return { kind: 'local', status: 503, body: `no healthy upstream for ${destSvc.key}${dest.subset ? ` subset ${dest.subset}` : ''}\n`, flags: 'UH', service: destSvc };
  const port = dialPort(destSvc, ep, dest.port ?? origDst?.port);
  // Every field set, in one order: the sessions read targets in their hot paths, and one object
  // shape keeps those reads monomorphic (optional fields spread in made a shape per combination).
  const target: Target = { kind: 'upstream', address: ep.address, port, host: undefined, path: undefined, service: destSvc, endpoint: ep, route: routeName, rule, delayMs, subset: dest.subset, inbound: undefined };
  if (rewrittenPath !== undefined) target.path = rewrittenPath;
  if (rule?.rewrite?.host) target.host = rule.rewrite.host;
  return target;
}
