// SPDX-License-Identifier: Apache-2.0
/**
 * One JSON access-log line per request (and per TCP connection), with the
 * fields a person filters on, sampled. Untrusted request data (path,
 * authority, user agent) sits under its own key so it can never pose as one
 * of ours.
 */
import type { Logger } from '../../log.ts';

export interface AccessEntry {
  start: string;
  durationMs: number;
  protocol: string;
  method?: string;
  status?: number;
  flags: string;
  bytesReceived: number;
  bytesSent: number;
  upstream?: string;
  service?: string;
  route?: string;
  requestId?: string;
  request?: { authority?: string; path?: string; userAgent?: string };
}

export class AccessLog {
  private readonly log: Logger;
  /** 0 to 1: the share of requests logged. */
  sampling: number;

  constructor(log: Logger, sampling = 1) {
    this.log = log;
    this.sampling = sampling;
  }

  /** Whether to build an entry at all (checked before any work on the hot path). */
  wants(): boolean {
    return this.sampling >= 1 || (this.sampling > 0 && Math.random() < this.sampling);
  }

  write(entry: AccessEntry): void {
    this.log.info(entry, 'access');
  }
}
