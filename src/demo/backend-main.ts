// SPDX-License-Identifier: Apache-2.0
/**
 * The demo's service replicas: one process serving every replica's port on
 * loopback, each answering as its service and version.
 * argv[2]: [{"service", "version", "replica", "port"}]
 */
import { createServer } from 'node:http';

const replicas = JSON.parse(process.argv[2]!) as Array<{ service: string; version: string; replica: number; port: number }>;
for (const r of replicas) {
  createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ service: r.service, version: r.version, replica: r.replica, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  }).listen(r.port, '127.0.0.1');
}
process.on('SIGTERM', () => process.exit(0));
