// SPDX-License-Identifier: Apache-2.0
/**
 * A fake Kubernetes API server on loopback that speaks the real list/watch
 * protocol, so the real @kubernetes/client-node code is what the tests run:
 * lists carry a resourceVersion; a watch from a resourceVersion streams
 * newline-delimited JSON events (ADDED, MODIFIED, DELETED, and BOOKMARK when
 * asked for) and stays open; a resourceVersion older than the last
 * compaction gets 410 Gone (as an ERROR event on a 200 stream, like the real
 * server, or as an HTTP 410); streams can be dropped and requests failed on
 * purpose. Leases support get, create and optimistic-concurrency replace.
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown }; [k: string]: unknown };
export type Resource = 'namespaces' | 'pods' | 'services' | 'endpointslices' | 'leases';

interface Event {
  rv: number;
  resource: Resource;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

interface WatchStream {
  resource: Resource;
  res: ServerResponse;
  matches: (o: Obj) => boolean;
  bookmarks: boolean;
}

const KINDS: Record<Resource, { kind: string; apiVersion: string }> = {
  namespaces: { kind: 'Namespace', apiVersion: 'v1' },
  pods: { kind: 'Pod', apiVersion: 'v1' },
  services: { kind: 'Service', apiVersion: 'v1' },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1' },
  leases: { kind: 'Lease', apiVersion: 'coordination.k8s.io/v1' },
};

const ROUTES: Array<[RegExp, Resource]> = [
  [/^\/api\/v1\/namespaces$/, 'namespaces'],
  [/^\/api\/v1\/pods$/, 'pods'],
  [/^\/api\/v1\/services$/, 'services'],
  [/^\/apis\/discovery\.k8s\.io\/v1\/endpointslices$/, 'endpointslices'],
];
const NAMESPACED_PODS = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/;
const LEASE = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/;

export class FakeApiServer {
  private server: Server | undefined;
  private rv = 1000;
  private readonly store = new Map<Resource, Map<string, Obj>>();
  private events: Event[] = [];
  private compactedAt = 0;
  private readonly watches = new Set<WatchStream>();
  private readonly sockets = new Set<Socket>();
  private readonly failures: Array<{ resource: Resource; status: number; watch: boolean }> = [];
  /** 'event': 410 as an ERROR event on a 200 stream (what the real server does); 'http': an HTTP 410. */
  goneAs: 'event' | 'http' = 'event';
  /** Every request, for assertions: method, resource or path, and the query. */
  readonly requests: Array<{ method: string; path: string; watch: boolean; resourceVersion: string | null; fieldSelector: string | null }> = [];
  url = '';

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    for (const w of this.watches) w.res.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server?.close(r));
  }

  private key(o: Obj): string {
    return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
  }

  private bucket(r: Resource): Map<string, Obj> {
    let m = this.store.get(r);
    if (!m) this.store.set(r, (m = new Map()));
    return m;
  }

  get(resource: Resource, name: string, namespace?: string): Obj | undefined {
    return this.bucket(resource).get(`${namespace ?? ''}/${name}`);
  }

  list(resource: Resource): Obj[] {
    return [...this.bucket(resource).values()];
  }

  /** Creates or replaces an object (a new resourceVersion), and tells the watchers. */
  put(resource: Resource, object: Obj): Obj {
    const o = structuredClone(object);
    const rv = ++this.rv;
    const had = this.bucket(resource).get(this.key(o));
    o.metadata.resourceVersion = String(rv);
    o.metadata.uid ??= (had?.metadata.uid as string | undefined) ?? `uid-${resource}-${rv}`;
    Object.assign(o, KINDS[resource]);
    this.bucket(resource).set(this.key(o), o);
    this.emit({ rv, resource, type: had ? 'MODIFIED' : 'ADDED', object: o });
    return o;
  }

  remove(resource: Resource, name: string, namespace?: string): void {
    const k = `${namespace ?? ''}/${name}`;
    const had = this.bucket(resource).get(k);
    if (!had) return;
    this.bucket(resource).delete(k);
    const rv = ++this.rv;
    this.emit({ rv, resource, type: 'DELETED', object: { ...had, metadata: { ...had.metadata, resourceVersion: String(rv) } } });
  }

  /** Forgets the event history: a watch from any earlier resourceVersion now gets 410 Gone. */
  compact(): void {
    this.compactedAt = this.rv;
    this.events = [];
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watches) {
      if (w.bookmarks) w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { ...KINDS[w.resource], metadata: { resourceVersion: String(this.rv) } } })}\n`);
    }
  }

  /** Cuts every open watch stream mid-flight (the connection is destroyed, not ended). */
  dropWatches(): number {
    const n = this.watches.size;
    for (const w of this.watches) w.res.socket?.destroy();
    this.watches.clear();
    return n;
  }

  /** The next request(s) for a resource (watch or list) answer this status. */
  failNext(resource: Resource, status: number, options: { watch?: boolean; times?: number } = {}): void {
    for (let i = 0; i < (options.times ?? 1); i++) this.failures.push({ resource, status, watch: options.watch ?? true });
  }

  openWatches(resource?: Resource): number {
    return [...this.watches].filter((w) => !resource || w.resource === resource).length;
  }

  private emit(e: Event): void {
    this.events.push(e);
    for (const w of this.watches) if (w.resource === e.resource && w.matches(e.object)) this.send(w.res, e);
  }

  private send(res: ServerResponse, e: Event): void {
    res.write(`${JSON.stringify({ type: e.type, object: e.object })}\n`);
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, watch, resourceVersion: url.searchParams.get('resourceVersion'), fieldSelector: url.searchParams.get('fieldSelector') });
    const lease = LEASE.exec(url.pathname);
    if (lease) return void this.lease(req, res, lease[1]!, lease[2]);
    const inNamespace = NAMESPACED_PODS.exec(url.pathname);
    if (inNamespace && !watch) {
      const items = this.list('pods').filter((o) => o.metadata.namespace === inNamespace[1]);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items }));
      return;
    }
    const route = ROUTES.find(([re]) => re.test(url.pathname));
    if (!route || req.method !== 'GET') return this.status(res, 404, 'NotFound', `the fake API server does not serve ${req.method} ${url.pathname}`);
    const resource = route[1];
    const failure = this.failures.findIndex((f) => f.resource === resource && f.watch === watch);
    if (failure >= 0) {
      const [f] = this.failures.splice(failure, 1);
      return this.status(res, f!.status, 'InternalError', 'injected failure');
    }
    const matches = selector(url.searchParams.get('fieldSelector'), url.searchParams.get('labelSelector'));
    if (!watch) {
      const items = this.list(resource).filter(matches);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: `${KINDS[resource].kind}List`, apiVersion: KINDS[resource].apiVersion, metadata: { resourceVersion: String(this.rv) }, items }));
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion') || this.rv);
    if (from < this.compactedAt) {
      const message = `too old resource version: ${from} (${this.compactedAt})`;
      if (this.goneAs === 'http') return this.status(res, 410, 'Expired', message);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Expired', code: 410 } })}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: WatchStream = { resource, res, matches, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' };
    for (const e of this.events) if (e.rv > from && e.resource === resource && matches(e.object)) this.send(res, e);
    this.watches.add(w);
    res.on('close', () => this.watches.delete(w));
  }

  private async lease(req: IncomingMessage, res: ServerResponse, namespace: string, name: string | undefined): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as Obj) : undefined;
    const failure = this.failures.findIndex((f) => f.resource === 'leases');
    if (failure >= 0) {
      const [f] = this.failures.splice(failure, 1);
      return this.status(res, f!.status, 'InternalError', 'injected failure');
    }
    const send = (code: number, o: Obj) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(o));
    };
    // Like the real server: MicroTime fields must carry exactly six fractional digits.
    for (const field of ['acquireTime', 'renewTime']) {
      const v = (body?.spec as Record<string, unknown> | undefined)?.[field];
      if (v !== undefined && v !== null && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(String(v))) {
        return this.status(res, 400, 'BadRequest', `Lease in version "v1" cannot be handled as a Lease: spec.${field}: parsing time "${String(v)}" as "2006-01-02T15:04:05.000000Z07:00"`);
      }
    }
    if (req.method === 'GET' && name) {
      const o = this.get('leases', name, namespace);
      return o ? send(200, o) : this.status(res, 404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`);
    }
    if (req.method === 'POST' && !name && body) {
      if (this.get('leases', body.metadata.name, namespace)) return this.status(res, 409, 'AlreadyExists', `leases.coordination.k8s.io "${body.metadata.name}" already exists`);
      return send(201, this.put('leases', { ...body, metadata: { ...body.metadata, namespace } }));
    }
    if (req.method === 'PUT' && name && body) {
      const cur = this.get('leases', name, namespace);
      if (!cur) return this.status(res, 404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`);
      if (body.metadata.resourceVersion !== cur.metadata.resourceVersion) {
        return this.status(res, 409, 'Conflict', `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      }
      return send(200, this.put('leases', { ...body, metadata: { ...body.metadata, namespace, name } }));
    }
    return this.status(res, 405, 'MethodNotAllowed', `${req.method} not supported on leases here`);
  }
}

/** fieldSelector (a=b, comma-separated, dotted paths) and equality labelSelector. */
function selector(field: string | null, label: string | null): (o: Obj) => boolean {
  const fields = (field ?? '').split(',').filter(Boolean).map((p) => p.split('=') as [string, string]);
  const labels = (label ?? '').split(',').filter(Boolean).map((p) => p.split('=') as [string, string]);
  return (o) =>
    fields.every(([path, want]) => String(path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o) ?? '') === want) &&
    labels.every(([k, want]) => (o.metadata.labels as Record<string, string> | undefined)?.[k] === want);
}
