// SPDX-License-Identifier: Apache-2.0
/** The one pino root; components take a child (`logger.child({ component })`). */
import { type DestinationStream, type LoggerOptions, pino, type Logger } from 'pino';

export type { Logger };

const options: LoggerOptions = {
  level: process.env.KERNMESH_LOG_LEVEL ?? 'info',
  base: { app: 'kernmesh' },
  redact: { paths: ['password', '*.password', 'redis.password'], censor: '[redacted]' },
};

export const rootLogger: Logger = pino(options);

export function childLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...bindings });
}

/** A logger like the root (same level, base, redaction) whose lines go to stream instead (a proxy worker's go to the primary). */
export function loggerTo(stream: DestinationStream): Logger {
  return pino(options, stream);
}

/**
 * Lines already formatted by another process's logger (a proxy worker's),
 * written whole through the root's own destination: the agent's output stays
 * one stream with one writer.
 */
export function writeLines(lines: string): void {
  (rootLogger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym]!.write(lines);
}

/** A logger that drops everything (tests, CLI one-shots). */
export const silentLogger: Logger = pino({ level: 'silent' });
