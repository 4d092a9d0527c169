// SPDX-License-Identifier: Apache-2.0
/** Where traffic goes: services, their endpoints, and workloads outside Kubernetes. */
import { z } from 'zod';
import { dnsName, ipAddress, labels, port, protocol, serviceRef } from './common.ts';

export const ServicePort = z
  .object({
    name: z.string().optional().describe('for people and status output (the Kubernetes port name)'),
    port,
    targetPort: port.optional().describe('the port endpoints listen on; default: port'),
    protocol: protocol
      .optional()
      .describe(
        'http, http2 and grpc: served as HTTP however late the client speaks; tcp and tls: passed through unread. Not set: detected from the first bytes, and a client silent for 100 ms is taken for a server-first protocol (TCP)',
      ),
  })
  .strict();

export const ServiceSpec = z
  .object({
    hosts: z.array(dnsName).default([]).describe('DNS names this service answers to'),
    addresses: z.array(ipAddress).default([]).describe('virtual IPs (a Kubernetes ClusterIP)'),
    ports: z.array(ServicePort).min(1),
    selector: labels.optional().describe('Workloads of its namespace whose labels match are its endpoints (on top of its Endpoints object)'),
  })
  .strict();

export const Endpoint = z
  .object({
    address: ipAddress,
    port: port.optional().describe('default: the service port\'s targetPort'),
    ports: z
      .record(z.string().min(1), port)
      .optional()
      .describe(
        'per service port, by its name: the port this endpoint listens on (a Kubernetes named targetPort, resolved per pod, may differ between pods of one service); default: `port`, then the service port\'s targetPort',
      ),
    node: z.string().optional().describe('for people and status output'),
    zone: z.string().optional(),
    labels: labels.default({}),
    weight: z.number().int().min(1).max(128).default(1),
    ready: z.boolean().default(true),
  })
  .strict();

/** The endpoints of the Service with the same namespace and name. */
export const EndpointsSpec = z
  .object({
    endpoints: z.array(Endpoint).default([]),
  })
  .strict();

/** A process or VM outside Kubernetes that joins the mesh by registering itself. */
export const WorkloadSpec = z
  .object({
    address: ipAddress,
    ports: z.array(port).default([]).describe('for people and status output: it is reached at the service port\'s targetPort'),
    labels: labels.default({}).describe('services of its namespace whose selector these match take it as an endpoint'),
    service: serviceRef.optional().describe('a service it is an endpoint of, whatever the selectors'),
    node: z.string().optional().describe('for people and status output'),
    zone: z.string().optional(),
    identity: z.string().optional().describe('the identity authorization policies match'),
  })
  .strict();
