// SPDX-License-Identifier: Apache-2.0
/** What `kernmesh demo up` made, written down so that `down` (even after a crash) can remove it. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface DemoState {
  dir: string;
  redisSocket: string;
  pids: Record<string, number>;
  netns: string[];
  cgroupRoot: string;
  pinDir: string;
  adminPort: number;
  vips: Record<string, string>;
}

export const DEFAULT_DEMO_DIR = '/run/kernmesh/demo';

export function statePath(dir: string): string {
  return join(dir, 'state.json');
}

export function readState(dir: string): DemoState | undefined {
  const p = statePath(dir);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, 'utf8')) as DemoState;
}

export function writeState(s: DemoState): void {
  mkdirSync(s.dir, { recursive: true });
  writeFileSync(statePath(s.dir), JSON.stringify(s, null, 2));
}

