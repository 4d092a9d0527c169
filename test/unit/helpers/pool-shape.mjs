// SPDX-License-Identifier: Apache-2.0
// Run by pool-shape.test.ts under `node --allow-natives-syntax`: whether the
// upstream pool's idle sweep changes the shape (V8 map) of the connections it
// stamps. Prints one JSON line: {"sameShape": boolean}.
import { createServer } from 'node:net';
import { UpstreamPool } from '../../../src/proxy/upstream/pool.ts';

const server = createServer(() => {});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const pool = new UpstreamPool();
const connect = () => new Promise((resolve, reject) => pool.connect('127.0.0.1', port, (err, conn) => (err ? reject(err) : resolve(conn))));
// Two connections made alike; only the first goes back to the pool, to be stamped by the sweep.
const stamped = await connect();
const untouched = await connect();
pool.release(stamped, 100); // a 100 ms idle timeout: swept every 25 ms
await new Promise((resolve) => setTimeout(resolve, 60));
const sameShape = %HaveSameMap(stamped, untouched);
console.log(JSON.stringify({ sameShape, stampedAt: stamped.idleSince }));
pool.close();
untouched.socket.destroy();
server.close();
