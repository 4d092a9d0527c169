// SPDX-License-Identifier: Apache-2.0
/** The datapath's public surface: everything else in kernmesh imports from here. */
export * from './codec.ts';
export * from './desired.ts';
export { EbpfDatapath, type EbpfOptions } from './ebpf.ts';
export { cleanupPins, isUnder, mountTypeOf, programsStillLoaded } from './pins.ts';
export { defaultLockPath, takeLock } from './lock.ts';
export * from './host.ts';
export * from './interceptor.ts';
export { IptablesDatapath, type IptablesOptions, renderRules } from './iptables.ts';
export { type SocketAddress, addon as nativeAddon } from './native.ts';
export { dialInNetns } from './netns-dial.ts';
export { Scratch, inCgroup, sweepStaleScratch } from './scratch.ts';
export { type HookResult, type SelftestReport, selftest } from './selftest/run.ts';
export { socketFd } from './selftest/echo.ts';
