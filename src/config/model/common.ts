// SPDX-License-Identifier: Apache-2.0
/** Building blocks shared by every kind's schema. */
import { SocketAddress } from 'node:net';
import { z } from 'zod';
import { regexProblem } from './regex.ts';

/** A DNS-1123 label (Kubernetes object names and namespaces). */
export const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be lowercase letters, digits and "-", starting and ending with a letter or digit');

/** A DNS-1123 subdomain (Kubernetes object names may contain dots). */
export const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be lowercase letters, digits, "-" and ".", starting and ending with a letter or digit');

/**
 * The longest duration the mesh accepts: 2^31-1 ms (about 24.8 days, 596h), the
 * longest wait Node's timers keep. A longer one would fire after 1 ms instead.
 */
export const MAX_DURATION_MS = 2_147_483_647;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** "250ms", "5s", "1m", "1h". */
export const duration = z
  .string()
  .regex(DURATION, 'must be a duration like 250ms, 5s, 1m or 1h')
  .refine((d) => !DURATION.test(d) || rawMs(d) <= MAX_DURATION_MS, `must be at most 596h (${MAX_DURATION_MS} ms, about 24.8 days: the longest wait a timer keeps)`)
  .describe('a duration: a number followed by ms, s, m or h; at most 596h');

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function rawMs(d: string): number {
  const m = DURATION.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/**
 * A duration in ms, at most MAX_DURATION_MS: validation refuses longer ones,
 * but objects stored before that check (or written past it) must still never
 * become a timer that fires at once.
 */
export function durationMs(d: string): number {
  return Math.min(rawMs(d), MAX_DURATION_MS);
}

/**
 * A duration that must be more than 0: a timeout or interval of 0 would
 * fire at once (every request a 504) or spin (an interval, a token fill).
 */
export const positiveDuration = duration.refine((d) => !DURATION.test(d) || rawMs(d) > 0, 'must be more than 0 (for no practical limit, use a long one such as 596h)');

export const port = z.number().int().min(1).max(65535);
export const percent = z.number().min(0).max(100).describe('0 to 100');
export const labels = z.record(z.string(), z.string());

/** "name" (same namespace) or "namespace/name". */
export const serviceRef = z
  .string()
  .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a service name or namespace/name')
  .describe('a Service in this namespace ("reviews") or another ("shop/reviews")');

export const ipAddress = z.union([z.ipv4(), z.ipv6()]);

/**
 * An address in the one form the kernel reports it in ("fd00::1", never
 * "FD00:0::1"): what the proxy looks up (a connection's original destination,
 * its peer) and what two services are compared by. Stored objects keep what
 * their author wrote; everything that matches on addresses goes through this.
 */
export function canonicalIp(address: string): string {
  // The schema only lets dotted-quad IPv4 through, which is already canonical.
  if (!address.includes(':')) return address;
  try {
    return new SocketAddress({ address, family: 'ipv6' }).address;
  } catch {
    return address;
  }
}
export const cidr = z.union([z.cidrv4(), z.cidrv6()]);

export const protocol = z.enum(['http', 'http2', 'grpc', 'tcp', 'tls']);

/** Matches a string: exactly one of exact, prefix or regex. */
export const stringMatch = z.union([
  z.object({ exact: z.string() }).strict(),
  z.object({ prefix: z.string() }).strict(),
  z
    .object({
      regex: z.string().superRefine((s, ctx) => {
        const problem = regexProblem(s);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    })
    .strict(),
]);

/** Resolves a serviceRef against the namespace it was written in. */
export function resolveServiceRef(ref: string, namespace: string): string {
  return ref.includes('/') ? ref : `${namespace}/${ref}`;
}
