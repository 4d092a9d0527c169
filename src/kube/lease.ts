// SPDX-License-Identifier: Apache-2.0
/**
 * Leader election on a coordination.k8s.io/v1 Lease, the way client-go does
 * it: the holder renews renewTime every retry period; a candidate takes the
 * lease only when the holder has not renewed for leaseDurationSeconds, as
 * measured on the candidate's own clock from when it last saw the record
 * change (no trust in other nodes' clocks). Every write carries the
 * resourceVersion read, so two candidates cannot both win (409 Conflict).
 *
 * isLeading() is false the moment a renewal shows someone else holds the
 * lease, and also once renewDeadline has passed without a successful
 * renewal (the API server unreachable): a controller that may have lost its
 * lease stops writing at once, before anyone else can take it over.
 * Elapsed times use the monotonic clock (an NTP step cannot stretch a term);
 * timestamps sent are MicroTime (six fractional digits, which the API
 * server insists on).
 */
import { performance } from 'node:perf_hooks';
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

export interface LeaseOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
}

const code = (err: unknown): number | undefined => (err as { code?: number }).code;

export class LeaseLeader {
  private readonly api: CoordinationV1Api;
  private readonly opts: Required<Omit<LeaseOptions, 'kc' | 'log'>> & { log: Logger };
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private leading = false;
  private lastRenew = 0;
  /** The record as last seen and when (local clock) it last changed. */
  private observed: { holder: string; renew: string; at: number } | undefined;
  private inFlight: Promise<boolean> | undefined;
  onChange: (leading: boolean) => void = () => {};
  lastError: string | undefined;

  constructor(options: LeaseOptions) {
    this.api = options.kc.makeApiClient(CoordinationV1Api);
    this.opts = {
      namespace: options.namespace,
      name: options.name,
      identity: options.identity,
      leaseDurationMs: options.leaseDurationMs ?? 15_000,
      renewDeadlineMs: options.renewDeadlineMs ?? 10_000,
      retryPeriodMs: options.retryPeriodMs ?? 2_000,
      log: options.log,
    };
  }

  get identity(): string {
    return this.opts.identity;
  }

  /** True only while our last renewal is younger than renewDeadline. */
  isLeading(): boolean {
    if (this.leading && performance.now() - this.lastRenew > this.opts.renewDeadlineMs) this.setLeading(false, 'renew deadline passed');
    return this.leading;
  }

  private setLeading(now: boolean, why: string): void {
    if (now === this.leading) return;
    this.leading = now;
    this.opts.log.info({ identity: this.opts.identity, lease: `${this.opts.namespace}/${this.opts.name}`, why }, now ? 'became leader' : 'stopped leading');
    this.onChange(now);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const loop = async () => {
      await this.tick();
      if (!this.stopped) this.timer = setTimeout(loop, this.opts.retryPeriodMs);
    };
    void loop();
  }

  /** One round: acquire or renew. Concurrent callers share the round in flight. */
  tick(): Promise<boolean> {
    this.inFlight ??= this.tryAcquireOrRenew().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    if (this.stopped) return false;
    const { namespace, name, identity } = this.opts;
    const now = new V1MicroTime();
    const started = performance.now();
    try {
      let lease: V1Lease | undefined;
      try {
        lease = await this.api.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (code(err) !== 404) throw err;
      }
      if (!lease) {
        await this.api.createNamespacedLease({
          namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: { holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.opts.leaseDurationMs / 1000), acquireTime: now, renewTime: now, leaseTransitions: 0 } },
        });
        return this.won(started);
      }
      const spec = lease.spec ?? {};
      const holder = spec.holderIdentity ?? '';
      const renew = spec.renewTime ? new Date(spec.renewTime).toISOString() : '';
      if (!this.observed || this.observed.holder !== holder || this.observed.renew !== renew) this.observed = { holder, renew, at: performance.now() };
      const durationMs = (spec.leaseDurationSeconds ?? Math.ceil(this.opts.leaseDurationMs / 1000)) * 1000;
      if (holder && holder !== identity && performance.now() - this.observed.at < durationMs) {
        this.setLeading(false, `held by ${holder}`);
        return false;
      }
      const ours = holder === identity;
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          ...lease,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: Math.ceil(this.opts.leaseDurationMs / 1000),
            renewTime: now,
            acquireTime: ours ? (spec.acquireTime ?? now) : now,
            leaseTransitions: (spec.leaseTransitions ?? 0) + (ours ? 0 : 1),
          },
        },
      });
      return this.won(started);
    } catch (err) {
      // 409: someone else wrote the lease between our read and write; they won this round.
      this.lastError = code(err) === 409 ? 'conflict: another replica renewed or took the lease' : (err as Error).message;
      if (code(err) === 409) this.setLeading(false, this.lastError);
      else this.opts.log.warn({ err: this.lastError, lease: `${namespace}/${name}` }, 'lease round failed');
      return this.isLeading();
    }
  }

  private won(startedAt: number): boolean {
    if (this.stopped) return false;
    // From when the round started: the renewal is only as fresh as the moment we asked.
    this.lastRenew = startedAt;
    this.lastError = undefined;
    this.setLeading(true, 'acquired or renewed the lease');
    return true;
  }

  /** Stops; with release (a graceful exit), hands the lease back so another replica takes over at once. */
  async stop(options: { release?: boolean } = { release: true }): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.inFlight?.catch(() => {});
    const was = this.leading;
    this.setLeading(false, 'stopping');
    if (!was || options.release === false) return;
    try {
      const lease = await this.api.readNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace });
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      await this.api.replaceNamespacedLease({ name: this.opts.name, namespace: this.opts.namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } } });
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'could not release the lease; another replica takes it when it expires');
    }
  }
}
