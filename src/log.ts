// SPDX-License-Identifier: Apache-2.0
/** The one pino root; components take a child (`logger.child({ component })`). */
import { pino, type Logger } from 'pino';

export type { Logger };

export const rootLogger: Logger = pino({
  level: process.env.KERNMESH_LOG_LEVEL ?? 'info',
  base: { app: 'kernmesh' },
  redact: { paths: ['password', '*.password', 'redis.password'], censor: '[redacted]' },
});

export function childLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings });
}

/** A logger that drops everything (tests, CLI one-shots). */
export const silentLogger: Logger = pino({ level: 'silent' });
