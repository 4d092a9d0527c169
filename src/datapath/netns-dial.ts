// SPDX-License-Identifier: Apache-2.0
/** Outgoing TCP sockets made inside another network namespace (a pod's), for the proxy's inbound side. */
import { Socket } from 'node:net';
import { addon } from './native.ts';

/**
 * Connects from inside the namespace at netnsPath to address:port. The
 * inbound side dials the pod's own address, which the datapath's sk_lookup
 * program leaves to the application (a connection from the pod's address to
 * itself), so an application bound only to its pod IP is reached as well as
 * one bound to every address.
 */
export function dialInNetns(netnsPath: string): (address: string, port: number) => Socket {
  return (address, port) => new Socket({ fd: addon().socketInNetns(netnsPath, address.includes(':') ? 6 : 4), readable: true, writable: true, allowHalfOpen: true }).connect(port, address);
}
