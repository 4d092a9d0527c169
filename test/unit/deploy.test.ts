// SPDX-License-Identifier: Apache-2.0
/**
 * deploy/ as `kubectl apply -k deploy/` would send it: rendered by the
 * renderer in helpers/kustomize.ts, every object checked against the
 * Kubernetes OpenAPI schemas (kubernetes-models), then what the agent, the
 * controller and Redis rely on checked field by field.
 */
import { parseAgentConfig } from '../../src/agent/config.ts';
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigMap, Namespace, ResourceQuota, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { parse } from 'yaml';
import { type KubeObject, KustomizeError, kustomize } from './helpers/kustomize.ts';

const ROOT = new URL('../../', import.meta.url);
const DEPLOY = new URL('deploy/', ROOT).pathname;
const NAMESPACE = 'kernmesh-system';
const IMAGE = 'ghcr.io/kernmesh/kernmesh:0.1.0';

type ModelClass = new (data: never) => { validate(): void };
/** A model per apiVersion/kind: an object of any other kind fails validation. */
const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ResourceQuota': ResourceQuota,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

/** The capabilities the agent may ask for; the DaemonSet's comments say why each. */
const AGENT_CAPABILITIES = ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE', 'SYS_RESOURCE'];

// Loose views of what the assertions read; the schemas have checked the shapes.
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, Record<string, unknown>> }>;
  securityContext?: { capabilities?: { drop?: string[]; add?: string[] }; privileged?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsUser?: number };
  livenessProbe?: { httpGet?: { path: string; port: number; host?: string } };
  readinessProbe?: { httpGet?: { path: string; port: number; host?: string } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
interface PodSpec {
  hostNetwork?: boolean;
  hostPID?: boolean;
  priorityClassName?: string;
  tolerations?: Array<{ operator?: string; key?: string }>;
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{ name: string; hostPath?: { path: string } }>;
}
interface Workload extends KubeObject {
  spec: { replicas?: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec }; volumeClaimTemplates?: Array<{ spec: { resources: { requests: { storage: string } } } }> };
}
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

const base = kustomize(DEPLOY);
const uninstall = kustomize(join(DEPLOY, 'uninstall'));

function find<T extends KubeObject = Workload>(objs: KubeObject[], kind: string, name: string): T {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind} ${name} is not rendered`);
  return o as T;
}

/** The schema errors of one object, or undefined when it is valid. */
function schemaErrors(obj: KubeObject): string | undefined {
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) return `no model for ${obj.apiVersion} ${obj.kind}: add one to MODELS`;
  try {
    new Model(obj as never).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The volume a container mounts at a path, resolved to its hostPath. */
function hostPathAt(pod: PodSpec, c: Container, mountPath: string): string | undefined {
  const m = c.volumeMounts?.find((v) => v.mountPath === mountPath);
  return pod.volumes?.find((v) => v.name === m?.name)?.hostPath?.path;
}

function container(w: Workload, name: string): Container {
  const c = [...w.spec.template.spec.containers, ...(w.spec.template.spec.initContainers ?? [])].find((x) => x.name === name);
  if (!c) throw new Error(`${w.metadata.name} has no container ${name}`);
  return c;
}

test('the base renders the objects kernmesh needs, each valid against the Kubernetes schemas', (t) => {
  t.deepEqual(base.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ClusterRole/kernmesh-agent',
    'ClusterRole/kernmesh-controller',
    'ClusterRoleBinding/kernmesh-agent',
    'ClusterRoleBinding/kernmesh-controller',
    'ConfigMap/kernmesh-config',
    'DaemonSet/kernmesh-agent',
    'Deployment/kernmesh-controller',
    'Namespace/kernmesh-system',
    'ResourceQuota/kernmesh-critical-pods',
    'Role/kernmesh-controller-leases',
    'RoleBinding/kernmesh-controller-leases',
    'Service/kernmesh-redis',
    'Service/kernmesh-redis-headless',
    'ServiceAccount/kernmesh-agent',
    'ServiceAccount/kernmesh-controller',
    'StatefulSet/kernmesh-redis',
  ]);
  for (const o of base) t.is(schemaErrors(o), undefined, `${o.kind}/${o.metadata.name}`);
});

test('namespaced objects are in kernmesh-system, cluster-scoped ones in none; all carry the part-of label', (t) => {
  for (const o of base) {
    const id = `${o.kind}/${o.metadata.name}`;
    t.is(o.metadata.namespace, CLUSTER_SCOPED.has(o.kind) ? undefined : NAMESPACE, id);
    t.is(o.metadata.labels?.['app.kubernetes.io/part-of'], 'kernmesh', id);
  }
  for (const [kind, name] of [['DaemonSet', 'kernmesh-agent'], ['Deployment', 'kernmesh-controller'], ['StatefulSet', 'kernmesh-redis']] as const) {
    const w = find(base, kind, name);
    t.is(w.spec.template.metadata.labels['app.kubernetes.io/part-of'], 'kernmesh', `${kind} pods`);
    // labels, not commonLabels: selectors stay as written (they are immutable once applied).
    t.is((w.spec as unknown as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels['app.kubernetes.io/part-of'], undefined, `${kind} selector`);
  }
  for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
    for (const b of base.filter((o) => o.kind === kind)) {
      for (const s of b.subjects as Array<{ kind: string; namespace?: string }>) t.is(s.namespace, NAMESPACE, `${kind}/${b.metadata.name} subject`);
    }
  }
});

test('the agent DaemonSet: host mounts, node name, capabilities, host namespaces, probes, scheduling, preStop', (t) => {
  const ds = find(base, 'DaemonSet', 'kernmesh-agent');
  const pod = ds.spec.template.spec;
  const agent = container(ds, 'agent');
  t.deepEqual(agent.command, ['kernmesh', 'agent', '--config', '/etc/kernmesh/agent.yaml']);

  t.is(hostPathAt(pod, agent, '/sys/fs/bpf'), '/sys/fs/bpf');
  t.is(hostPathAt(pod, agent, '/sys/fs/cgroup'), '/sys/fs/cgroup');
  t.is(hostPathAt(pod, agent, '/host/proc'), '/proc');
  t.true(agent.volumeMounts?.find((m) => m.mountPath === '/host/proc')?.readOnly, '/proc read-only');
  t.truthy(hostPathAt(pod, agent, '/var/lib/kernmesh'), 'snapshot cache on the node');
  t.truthy(hostPathAt(pod, agent, '/run/kernmesh'), 'lock directory on the node');
  t.truthy(agent.volumeMounts?.find((m) => m.mountPath === '/etc/kernmesh'), 'the ConfigMap');

  t.deepEqual(agent.env?.find((e) => e.name === 'NODE_NAME')?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  for (const name of ['REDIS_URL', 'REDIS_PASSWORD', 'KERNMESH_MESH', 'KERNMESH_LOG_LEVEL']) t.truthy(agent.env?.find((e) => e.name === name), name);

  const sc = agent.securityContext;
  t.deepEqual(sc?.capabilities?.drop, ['ALL']);
  t.true((sc?.capabilities?.add?.length ?? 0) > 0);
  for (const cap of sc?.capabilities?.add ?? []) t.true(AGENT_CAPABILITIES.includes(cap), `capability ${cap} is not on the allowed list`);
  t.not(sc?.privileged, true);
  t.is(sc?.allowPrivilegeEscalation, false);
  t.is(sc?.readOnlyRootFilesystem, true);

  t.not(pod.hostPID, true);
  t.is(pod.hostNetwork, true);
  t.is(agent.livenessProbe?.httpGet?.path, '/healthz');
  t.is(agent.readinessProbe?.httpGet?.path, '/readyz');
  // The admin endpoint is loopback-only; hostNetwork lets the kubelet reach it there.
  t.is(agent.livenessProbe?.httpGet?.host, '127.0.0.1');
  t.is(pod.priorityClassName, 'system-node-critical');
  t.true(pod.tolerations?.some((x) => x.operator === 'Exists' && !x.key));
  t.deepEqual(agent.lifecycle?.preStop?.exec?.command, ['kernmesh', 'drain']);
});

test('the patch in kustomization.yaml and the image override are applied', (t) => {
  const redis = find(base, 'StatefulSet', 'kernmesh-redis');
  t.is(redis.spec.volumeClaimTemplates?.[0]?.spec.resources.requests.storage, '2Gi');
  const ours = base
    .filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment')
    .flatMap((o) => [...(o as Workload).spec.template.spec.containers, ...((o as Workload).spec.template.spec.initContainers ?? [])]);
  t.true(ours.length >= 2);
  for (const c of ours) t.is(c.image, IMAGE, c.name);
});

test('RBAC is least privilege: no wildcards, no secrets, the lease by name', (t) => {
  const roles = base.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
  t.is(roles.length, 3);
  for (const r of roles) {
    for (const rule of r.rules as Rule[]) {
      const id = `${r.kind}/${r.metadata.name}`;
      t.false(rule.verbs.includes('*'), `${id}: wildcard verb`);
      t.false((rule.resources ?? []).includes('*'), `${id}: wildcard resource`);
      t.false((rule.apiGroups ?? []).includes('*'), `${id}: wildcard group`);
      t.false((rule.resources ?? []).includes('secrets'), `${id}: secrets`);
      t.true(rule.verbs.every((v) => ['get', 'list', 'watch', 'create', 'update'].includes(v)), `${id}: ${rule.verbs.join(',')}`);
    }
  }
  const rulesOf = (kind: string, name: string) => find<KubeObject>(base, kind, name).rules as Rule[];
  t.deepEqual(rulesOf('ClusterRole', 'kernmesh-agent'), [{ apiGroups: [''], resources: ['pods', 'namespaces'], verbs: ['get', 'list', 'watch'] }]);
  t.deepEqual(rulesOf('ClusterRole', 'kernmesh-controller'), [
    { apiGroups: [''], resources: ['services', 'pods'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
  ]);
  const leases = rulesOf('Role', 'kernmesh-controller-leases');
  for (const rule of leases) t.deepEqual(rule.resources, ['leases']);
  // Only create goes without a name: the authorizer sees none on a create.
  t.deepEqual(leases.filter((r) => !r.resourceNames).flatMap((r) => r.verbs), ['create']);
  t.deepEqual(leases.filter((r) => r.resourceNames).map((r) => [r.resourceNames, r.verbs]), [[['kernmesh-controller'], ['get', 'update']]]);
});

test('the controller: two replicas, health probes, non-root, no capabilities', (t) => {
  const d = find(base, 'Deployment', 'kernmesh-controller');
  t.is(d.spec.replicas, 2);
  const c = container(d, 'controller');
  t.deepEqual(c.command?.slice(0, 3), ['kernmesh', 'controller', '--kubernetes']);
  t.is(c.livenessProbe?.httpGet?.path, '/healthz');
  t.is(c.readinessProbe?.httpGet?.path, '/readyz');
  t.is(c.livenessProbe?.httpGet?.port, 15021);
  t.deepEqual(c.securityContext?.capabilities, { drop: ['ALL'] });
  t.is((d.spec.template.spec as unknown as { securityContext: { runAsNonRoot: boolean } }).securityContext.runAsNonRoot, true);
});

test('Redis: append-only, and the password Secret is optional and not shipped', (t) => {
  const redis = find(base, 'StatefulSet', 'kernmesh-redis');
  t.is(redis.spec.replicas, 1);
  const c = container(redis, 'redis');
  t.regex([...(c.command ?? []), ...(c.args ?? [])].join(' '), /--appendonly yes/);
  t.false(base.some((o) => o.kind === 'Secret'));
  const refs = base
    .filter((o): o is Workload => ['DaemonSet', 'Deployment', 'StatefulSet'].includes(o.kind))
    .flatMap((w) => w.spec.template.spec.containers.flatMap((x) => x.env ?? []))
    .map((e) => e.valueFrom?.secretKeyRef)
    .filter((r) => r !== undefined);
  t.true(refs.length >= 3);
  for (const r of refs) t.deepEqual(r, { name: 'kernmesh-redis-auth', key: 'password', optional: true });
});

test('the ConfigMap holds the agent configuration with exactly the expected keys', (t) => {
  const data = find<KubeObject>(base, 'ConfigMap', 'kernmesh-config').data as Record<string, string>;
  const agent = parse(data['agent.yaml'] ?? '') as Record<string, unknown>;
  t.deepEqual(agent, {
    mode: 'ebpf',
    pinDir: '/sys/fs/bpf/kernmesh',
    cachePath: '/var/lib/kernmesh/snapshot.json',
    outboundPort: 15001,
    adminPort: 15000,
    metricsPort: 15090,
    proxyWorkers: 'auto',
    detachOnStop: true,
    nodeAddresses: 'auto',
    kubernetes: { enabled: true, procRoot: '/host/proc', cgroupRoot: '/sys/fs/cgroup' },
  });
  // And the agent itself accepts it, with the node name from the downward API.
  t.like(parseAgentConfig(agent, 'agent.yaml', { NODE_NAME: 'node-1' }), { node: 'node-1', detachOnStop: true, kubernetes: { enabled: true, procRoot: '/host/proc' } });
  t.truthy(data.KERNMESH_MESH);
  t.is(data.KERNMESH_LOG_LEVEL, 'info');
  // The agent's metrics port is the one Prometheus is told to scrape.
  const ds = find(base, 'DaemonSet', 'kernmesh-agent');
  t.is((ds.spec.template.metadata as unknown as { annotations: Record<string, string> }).annotations['prometheus.io/port'], String(agent.metricsPort));
});

test('the Grafana dashboard parses and queries only metrics the proxy exports, all of them', (t) => {
  const source = readFileSync(new URL('src/proxy/telemetry/metrics.ts', ROOT), 'utf8');
  // Three ways metrics.ts names a metric: prom-client's `name: '…'`, the
  // hand-rendered counter's `# TYPE … counter` line, and `hist('…'` (which
  // exports _bucket, _sum and _count series).
  const histograms = [...source.matchAll(/hist\('((?:istio|kernmesh)_[a-z0-9_]+)'/g)].map((m) => m[1]!);
  const defined = new Set([
    ...[...source.matchAll(/name: '((?:istio|kernmesh)_[a-z0-9_]+)'/g)].map((m) => m[1]!),
    ...[...source.matchAll(/# TYPE ((?:istio|kernmesh)_[a-z0-9_]+) counter/g)].map((m) => m[1]!),
    ...histograms,
  ]);
  t.true(defined.size >= 15 && histograms.length === 3, 'metrics.ts still declares its names as literals');
  const exported = new Set([...defined].filter((n) => !histograms.includes(n)));
  for (const h of histograms) for (const suffix of ['_bucket', '_sum', '_count']) exported.add(h + suffix);

  interface Panel {
    type: string;
    targets?: Array<{ expr: string; datasource?: { uid: string } }>;
    panels?: Panel[];
  }
  const dash = JSON.parse(readFileSync(join(DEPLOY, 'grafana/kernmesh-dashboard.json'), 'utf8')) as {
    schemaVersion: number;
    panels: Panel[];
    templating: { list: Array<{ name: string; type: string; query: string | { query: string } }> };
  };
  t.true(dash.schemaVersion >= 36);
  t.like(dash.templating.list.find((v) => v.name === 'DS_PROMETHEUS'), { type: 'datasource', query: 'prometheus' });
  const flat = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...flat(p.panels ?? [])]);
  const exprs = flat(dash.panels).flatMap((p) => p.targets ?? []);
  t.true(exprs.length > 10);
  for (const target of exprs) t.is(target.datasource?.uid, '${DS_PROMETHEUS}');
  const queries = [...exprs.map((x) => x.expr), ...dash.templating.list.filter((v) => v.type === 'query').map((v) => (typeof v.query === 'string' ? v.query : v.query.query))];
  const used = new Set<string>();
  for (const q of queries) {
    for (const [name] of q.matchAll(/\b(?:istio|kernmesh)_[a-z0-9_]+/g)) {
      t.true(exported.has(name), `${name} (in ${q}) is not a metric of src/proxy/telemetry/metrics.ts`);
      used.add(name.replace(/_(bucket|sum|count)$/, ''));
    }
  }
  for (const name of defined) t.true(used.has(name), `no panel shows ${name}`);
});

test('the uninstall overlay renders, validates and cleans the pins before it reports ready', (t) => {
  t.deepEqual(uninstall.map((o) => `${o.kind}/${o.metadata.name}`).sort(), ['DaemonSet/kernmesh-cleanup', 'Namespace/kernmesh-system']);
  for (const o of uninstall) t.is(schemaErrors(o), undefined, `${o.kind}/${o.metadata.name}`);
  const ds = find(uninstall, 'DaemonSet', 'kernmesh-cleanup');
  t.is(ds.metadata.namespace, NAMESPACE);
  const pod = ds.spec.template.spec;
  const cleanup = container(ds, 'cleanup');
  t.true(pod.initContainers?.includes(cleanup));
  t.deepEqual(cleanup.command, ['kernmesh', 'datapath', 'cleanup', '--pin-dir', '/sys/fs/bpf/kernmesh']);
  t.is(cleanup.image, IMAGE);
  t.is(hostPathAt(pod, cleanup, '/sys/fs/bpf'), '/sys/fs/bpf');
  t.is(hostPathAt(pod, cleanup, '/sys/fs/cgroup'), '/sys/fs/cgroup');
  t.deepEqual(cleanup.securityContext?.capabilities?.drop, ['ALL']);
  t.deepEqual(cleanup.securityContext?.capabilities?.add, AGENT_CAPABILITIES.filter((c) => c !== 'SYS_PTRACE'));
  t.true(pod.tolerations?.some((x) => x.operator === 'Exists' && !x.key));
  t.deepEqual(container(ds, 'done').command, ['sleep', 'infinity']);
});

test('the renderer throws on a kustomization field it does not know', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-kustomize-'));
  writeFileSync(join(dir, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n');
  writeFileSync(join(dir, 'kustomization.yaml'), 'resources: [cm.yaml]\ncommonAnnotations:\n  a: b\n');
  t.throws(() => kustomize(dir), { instanceOf: KustomizeError, message: /"commonAnnotations" is not supported/ });
  writeFileSync(join(dir, 'kustomization.yaml'), 'resources: [cm.yaml]\nnamespace: n\n');
  t.is(kustomize(dir)[0]?.metadata.namespace, 'n');
  // A kind the renderer cannot place (namespaced or not) is refused too.
  writeFileSync(join(dir, 'job.yaml'), 'apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n');
  writeFileSync(join(dir, 'kustomization.yaml'), 'resources: [job.yaml]\n');
  t.throws(() => kustomize(dir), { instanceOf: KustomizeError, message: /batch\/v1 Job is not in/ });
});

test('schema validation rejects a broken DaemonSet and a kind without a model', (t) => {
  const ds = structuredClone(find(base, 'DaemonSet', 'kernmesh-agent'));
  t.is(schemaErrors(ds), undefined);
  delete (ds.spec.template.spec.containers[0] as Partial<Container>).name;
  t.regex(schemaErrors(ds) ?? '', /must have required property 'name'|required property name/);
  const typed = structuredClone(find(base, 'DaemonSet', 'kernmesh-agent'));
  (typed.spec.template.spec as unknown as { hostNetwork: string }).hostNetwork = 'yes';
  t.regex(schemaErrors(typed) ?? '', /hostNetwork must be boolean/);
  t.regex(schemaErrors({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' } }) ?? '', /no model/);
});
