// SPDX-License-Identifier: Apache-2.0
/**
 * HTTP/1.1 keep-alive through our proxy and through HAProxy (nbthread 1,
 * http-reuse always) to the same backend, interleaved in one run:
 *
 *   npm run bench:proxy [-- --rounds 5 --seconds 5 --connections 16]
 *
 * The backend is a second HAProxy answering a fixed 200 itself, so neither
 * proxy is measured against a slow Node backend. wrk (-t1) drives the load.
 * Load generator, proxy and backend share this machine's cores. The last
 * line is one JSON object: kernmesh_rps, haproxy_rps, ratio, kernmesh_p50_ms,
 * haproxy_p50_ms (medians of the rounds), each proxy's CPU time per request
 * (steadier than throughput on a shared machine) and every round's figures.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { freePort } from '../../src/ports.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, seconds: { type: 'string', default: '5' }, connections: { type: 'string', default: '16' } } });
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNS = Number(values.connections);


async function waitPort(port: number): Promise<void> {
  const { connect } = await import('node:net');
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on ${port}`);
}

interface Run {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** The proxy process's CPU time per request (user + system), in microseconds. */
  cpu_us_per_req: number;
}

/** utime + stime of a process, in seconds (from /proc/PID/stat, clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function ms(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

async function wrk(port: number, pid: number): Promise<Run> {
  const cpu0 = cpuSeconds(pid);
  const { stdout } = await promisify(execFile)('wrk', ['-t1', `-c${CONNS}`, `-d${SECONDS}s`, '--latency', `http://127.0.0.1:${port}/`]);
  const cpu = cpuSeconds(pid) - cpu0;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = /50%\s+([\d.]+)(us|ms|s)/.exec(stdout);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(stdout);
  if (!rps || !p50 || !p99) throw new Error(`could not read wrk output:\n${stdout}`);
  if (/Non-2xx/.test(stdout)) throw new Error(`errors during the run:\n${stdout}`);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  return { rps, p50_ms: ms(p50[1]!, p50[2]!), p99_ms: ms(p99[1]!, p99[2]!), cpu_us_per_req: Math.round((cpu / requests) * 1e7) / 10 };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-bench-proxy-'));
  const children: ChildProcess[] = [];
  try {
    const [backendPort, haproxyPort, ourPort] = [await freePort(), await freePort(), await freePort()];
    writeFileSync(
      join(dir, 'backend.cfg'),
      `global\n  nbthread 1\ndefaults\n  mode http\n  timeout client 30s\n  timeout server 30s\n  timeout connect 1s\nfrontend fe\n  bind 127.0.0.1:${backendPort}\n  http-request return status 200 content-type text/plain string "hello from the backend\\n"\n`,
    );
    writeFileSync(
      join(dir, 'proxy.cfg'),
      `global\n  nbthread 1\ndefaults\n  mode http\n  timeout client 30s\n  timeout server 30s\n  timeout connect 1s\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:${haproxyPort}\n  default_backend be\nbackend be\n  server s1 127.0.0.1:${backendPort}\n`,
    );
    children.push(spawn('haproxy', ['-f', join(dir, 'backend.cfg'), '-db'], { stdio: 'ignore' }));
    const haproxy = spawn('haproxy', ['-f', join(dir, 'proxy.cfg'), '-db'], { stdio: 'ignore' });
    const ourProxy = spawn(process.execPath, [new URL('./proxy-server.ts', import.meta.url).pathname, String(ourPort), String(backendPort)], { stdio: 'ignore' });
    children.push(haproxy, ourProxy);
    await Promise.all([waitPort(backendPort), waitPort(haproxyPort), waitPort(ourPort)]);
    // Warm both up (JIT, pools) before anything is counted.
    await Promise.all([wrkShort(ourPort), wrkShort(haproxyPort)]);

    const ours: Run[] = [];
    const theirs: Run[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await wrk(ourPort, ourProxy.pid!));
      theirs.push(await wrk(haproxyPort, haproxy.pid!));
      console.error(`round ${r + 1}: kernmesh ${Math.round(ours[r]!.rps)} rps p50 ${ours[r]!.p50_ms} ms ${ours[r]!.cpu_us_per_req} cpu-us/req | haproxy ${Math.round(theirs[r]!.rps)} rps p50 ${theirs[r]!.p50_ms} ms ${theirs[r]!.cpu_us_per_req} cpu-us/req`);
    }
    const result = {
      kernmesh_rps: Math.round(median(ours.map((x) => x.rps))),
      haproxy_rps: Math.round(median(theirs.map((x) => x.rps))),
      ratio: Math.round((median(ours.map((x) => x.rps)) / median(theirs.map((x) => x.rps))) * 1000) / 1000,
      kernmesh_p50_ms: median(ours.map((x) => x.p50_ms)),
      haproxy_p50_ms: median(theirs.map((x) => x.p50_ms)),
      kernmesh_p99_ms: median(ours.map((x) => x.p99_ms)),
      haproxy_p99_ms: median(theirs.map((x) => x.p99_ms)),
      kernmesh_cpu_us_per_req: median(ours.map((x) => x.cpu_us_per_req)),
      haproxy_cpu_us_per_req: median(theirs.map((x) => x.cpu_us_per_req)),
      rounds: ROUNDS,
      seconds: SECONDS,
      connections: CONNS,
      runs: { kernmesh: ours, haproxy: theirs },
      note: 'wrk -t1 keep-alive on loopback, no interception; wrk, proxy and backend share the machine',
    };
    console.log(JSON.stringify(result));
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function wrkShort(port: number): Promise<void> {
  await promisify(execFile)('wrk', ['-t1', `-c${CONNS}`, '-d1s', `http://127.0.0.1:${port}/`]);
}

await main();
