// SPDX-License-Identifier: Apache-2.0
/** `kernmesh` as a script runs it: a child process against a test's own redis-server. */
import { spawn } from 'node:child_process';

const cli = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function collect(child: ReturnType<typeof spawn>): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr })));
}

/**
 * Runs `kernmesh ...args`. Its stdin gets `input` (nothing when not given),
 * after `inputDelayMs`: a writer slow to start, as `(sleep 1; cat f) |` is.
 */
export function kernmesh(url: string, args: string[], options: { input?: string; inputDelayMs?: number } = {}): Promise<Run> {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, REDIS_URL: url }, stdio: ['pipe', 'pipe', 'pipe'] });
  const done = collect(child);
  const feed = () => child.stdin.end(options.input ?? '');
  if (options.inputDelayMs) setTimeout(feed, options.inputDelayMs);
  else feed();
  return done;
}

/** `kernmesh ...from | kernmesh ...to`: the first one's stdout is the second one's stdin, through a pipe. */
export async function piped(url: string, from: string[], to: string[]): Promise<{ from: Run; to: Run }> {
  const env = { ...process.env, REDIS_URL: url };
  const a = spawn(process.execPath, [cli, ...from], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const b = spawn(process.execPath, [cli, ...to], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  a.stdout.pipe(b.stdin);
  const [ra, rb] = await Promise.all([collect(a), collect(b)]);
  return { from: ra, to: rb };
}

/** `(sleep 1; cat FILE) | kernmesh ...args` in a shell: stdin a real pipe(2) whose writer starts late. */
export function lateShellPipe(url: string, file: string, args: string[]): Promise<Run> {
  const script = 'f=$1; shift; (sleep 1; cat "$f") | "$@"';
  const child = spawn('sh', ['-c', script, 'sh', file, process.execPath, cli, ...args], { env: { ...process.env, REDIS_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] });
  return collect(child);
}
