// SPDX-License-Identifier: Apache-2.0
/**
 * `kernmesh bench --idle-poll`: keeps the CPUs out of idle states while a
 * latency workload measures, as cyclictest does and as tuned's latency
 * profiles do for a node: a request to the kernel's CPU latency QoS
 * (/dev/cpu_dma_latency) for a 0 µs target, in force while the file is open
 * and dropped by the kernel when it is closed, also when the process dies.
 * Nothing on the machine is changed for longer.
 *
 * What it shows: at a light load much of a request's latency is waking
 * things up. A request through the mesh wakes the proxy twice and the server
 * and the generator once each, and on the reference machine's 2 vCPUs (a
 * Firecracker guest whose haltpoll idle halts at once) a wake from a halted
 * CPU costs tens of microseconds, in every mode alike. On loopback (no
 * namespaces, no interception) at 2 000 req/s, with the CPUs polling instead
 * of halting: no proxy p50 0.072 -> 0.044 ms and p99 0.17 -> 0.08; HAProxy
 * as the proxy p99 0.25 -> 0.16; ours 0.29 -> 0.20. docs/bench.md has the
 * bench's own figures both ways.
 *
 * Not the default: idle CPUs spin for the length of every latency run (on a
 * shared host, that is CPU taken from its other tenants), and a node does
 * not run like that unless someone tuned it to.
 */
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';

export const CPU_LATENCY_DEVICE = '/dev/cpu_dma_latency';

export interface CpuLatencyHold {
  release(): void;
}

/** The device reads and writes a native-endian s32. */
const LITTLE_ENDIAN = endianness() === 'LE';

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  if (LITTLE_ENDIAN) b.writeInt32LE(n);
  else b.writeInt32BE(n);
  return b;
}

/** Holds the CPU latency target at targetUs until release(). Throws what to do when it cannot. */
export function holdCpuLatency(targetUs = 0, device = CPU_LATENCY_DEVICE): CpuLatencyHold {
  let fd = -1;
  try {
    // Write-only, never O_CREAT: a missing device must not become a file in /dev.
    fd = openSync(device, constants.O_WRONLY);
    writeSync(fd, int32(targetUs));
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    throw new Error(`cannot keep the CPUs out of idle for the latency workloads (${device}: ${(err as Error).message}): run as root, or run without --idle-poll`);
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      closeSync(fd);
    },
  };
}

/** The CPU latency target in force now, in µs (2000000000: no request). */
export function cpuLatencyTargetUs(device = CPU_LATENCY_DEVICE): number {
  const fd = openSync(device, constants.O_RDONLY);
  try {
    const b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, null);
    return LITTLE_ENDIAN ? b.readInt32LE() : b.readInt32BE();
  } finally {
    closeSync(fd);
  }
}
