// SPDX-License-Identifier: Apache-2.0
// Which pods are captured (namespace label, annotations, host network, phase),
// and finding a pod's cgroup and netns under both kubelet cgroup drivers.
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import { findKubepods, findOwnCgroup, findPodCgroup, findPodNetns, podPidsFromProc } from '../../src/kube/discover.ts';
import { portProtocol } from '../../src/kube/mesh-objects.ts';
import { captureSettings, decidePods } from '../../src/kube/pods.ts';
import { namespace, pod } from '../kube/helpers/objects.ts';

const ns = [namespace('shop', true), namespace('legacy', false)] as V1Namespace[];

test('pods of captured namespaces on this node are captured, with their annotations; the others say why not', (t) => {
  const pods = [
    pod('shop', 'plain', 'node-a'),
    pod('shop', 'tuned', 'node-a', { annotations: { 'kernmesh.io/exclude-outbound-ports': '5432, 6379', 'kernmesh.io/exclude-outbound-cidrs': '10.0.0.0/8,fd00::/8', 'kernmesh.io/inbound-ports': '8080' }, ip: '10.244.1.7' }),
    pod('shop', 'out', 'node-a', { annotations: { 'kernmesh.io/capture': 'disabled' } }),
    pod('shop', 'host', 'node-a', { hostNetwork: true }),
    pod('shop', 'done', 'node-a', { phase: 'Succeeded' }),
    pod('shop', 'bad', 'node-a', { annotations: { 'kernmesh.io/exclude-outbound-ports': '5432,http' } }),
    pod('shop', 'badcidr', 'node-a', { annotations: { 'kernmesh.io/exclude-outbound-cidrs': '10.0.0.0/33' } }),
    pod('shop', 'elsewhere', 'node-b'),
    pod('legacy', 'client', 'node-a'),
  ] as V1Pod[];
  const d = new Map(decidePods(ns, pods, 'node-a').map((x) => [x.name, x]));
  t.deepEqual([...d.keys()].sort(), ['bad', 'badcidr', 'done', 'host', 'out', 'plain', 'tuned']);
  t.like(d.get('plain'), { capture: true, excludedPorts: [], serviceAccount: 'plain' });
  t.like(d.get('tuned'), { capture: true, excludedPorts: [5432, 6379], excludedCidrs: ['10.0.0.0/8', 'fd00::/8'], inboundPorts: [8080], addresses: ['10.244.1.7'] });
  t.like(d.get('out'), { capture: false });
  t.regex(d.get('out')!.reason!, /opted out/);
  t.regex(d.get('host')!.reason!, /hostNetwork/);
  t.regex(d.get('done')!.reason!, /ended/);
  t.regex(d.get('bad')!.reason!, /"http" is not a port/);
  t.regex(d.get('badcidr')!.reason!, /not a CIDR/);
});

test("MeshSettings' capture label chooses the namespaces, and its inbound ports are the default of pods without the annotation", (t) => {
  const labelled = [{ metadata: { name: 'shop', labels: { 'example.com/mesh': 'enabled' } } }, namespace('legacy', true)] as V1Namespace[];
  const pods = [pod('shop', 'plain', 'node-a'), pod('shop', 'own', 'node-a', { annotations: { 'kernmesh.io/inbound-ports': '9090' } }), pod('legacy', 'client', 'node-a')] as V1Pod[];
  const d = new Map(decidePods(labelled, pods, 'node-a', captureSettings({ capture: { namespaceLabel: 'example.com/mesh', inboundPorts: [8080] } })).map((x) => [x.name, x]));
  t.deepEqual([...d.keys()].sort(), ['own', 'plain'], 'legacy carries the default label, which is no longer the one');
  t.deepEqual(d.get('plain')!.inboundPorts, [8080]);
  t.deepEqual(d.get('own')!.inboundPorts, [9090], 'the annotation wins');
  t.deepEqual(captureSettings(undefined), { namespaceLabel: 'kernmesh.io/capture', inboundPorts: [] });
});

test('a pod’s cgroup is found by uid under either cgroup driver, and its netns through a process in it (never the node’s)', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'kernmesh-cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const uid = '5f3c1a2e-0b7d-4c1e-9a55-3f1e2d4c5b6a';
  const dir = (...p: string[]) => {
    const d = join(root, ...p);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const procs = (d: string, pids: number[]) => writeFileSync(join(d, 'cgroup.procs'), pids.map((p) => `${p}\n`).join(''));
  // systemd driver, burstable; cgroupfs driver, guaranteed (directly under kubepods).
  const sys = dir('systemd', 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice`);
  const ctr = dir('systemd', 'kubepods.slice', 'kubepods-burstable.slice', `kubepods-burstable-pod${uid.replaceAll('-', '_')}.slice`, 'cri-containerd-abc.scope');
  procs(sys, []);
  procs(ctr, [4242]);
  const fs = dir('cgroupfs', 'kubepods', `pod${uid}`);
  t.is(findKubepods(join(root, 'systemd')), join(root, 'systemd', 'kubepods.slice'));
  t.is(findKubepods(join(root, 'cgroupfs')), join(root, 'cgroupfs', 'kubepods'));
  t.is(findPodCgroup(join(root, 'systemd', 'kubepods.slice'), uid), sys);
  t.is(findPodCgroup(join(root, 'cgroupfs', 'kubepods'), uid), fs);
  t.is(findPodCgroup(join(root, 'cgroupfs', 'kubepods'), 'no-such-uid'), undefined);
  t.is(findOwnCgroup(join(root, 'systemd', 'kubepods.slice'), 4242), ctr);

  // A fake /proc: pid 1 is the node (its own netns), 4242 is in the pod's.
  const proc = dir('proc');
  for (const [pid, target] of [['1', 'host-ns'], ['4242', 'pod-ns']] as const) {
    writeFileSync(join(proc, target), '');
    mkdirSync(join(proc, pid, 'ns'), { recursive: true });
    symlinkSync(join(proc, target), join(proc, pid, 'ns', 'net'));
  }
  t.deepEqual(findPodNetns(sys, proc), { path: join(proc, '4242', 'ns', 'net') });
  procs(ctr, [1]);
  t.regex(findPodNetns(sys, proc).problem!, /node's network namespace/);
  procs(ctr, []);
  t.regex(findPodNetns(sys, proc).problem!, /no process/);
});

test('a Kubernetes port’s protocol: appProtocol, then the port name, else opaque TCP', (t) => {
  t.is(portProtocol({ appProtocol: 'kubernetes.io/h2c' }), 'http2');
  t.is(portProtocol({ name: 'grpc-api' }), 'grpc');
  t.is(portProtocol({ name: 'http' }), 'http');
  t.is(portProtocol({ name: 'https-web' }), 'tls');
  t.is(portProtocol({ name: 'postgres' }), 'tcp');
  t.is(portProtocol({}), 'tcp');
});

test('from another pid namespace (cgroup.procs reads 0), the pod’s processes are found by scanning /proc/<pid>/cgroup; the oldest is chosen', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'kernmesh-pidns-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const uid = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
  const pod = join(root, 'cg', `kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice`);
  mkdirSync(join(pod, 'cri-containerd-1.scope'), { recursive: true });
  writeFileSync(join(pod, 'cri-containerd-1.scope', 'cgroup.procs'), '0\n0\n');
  const proc = join(root, 'proc');
  const fakeProc = (pid: number, cgroup: string, start: number) => {
    mkdirSync(join(proc, String(pid), 'ns'), { recursive: true });
    writeFileSync(join(proc, String(pid), 'cgroup'), `0::${cgroup}\n`);
    writeFileSync(join(proc, String(pid), 'stat'), `${pid} (sleep (x)) S ${Array.from({ length: 18 }, () => '0').join(' ')} ${start} 0\n`);
    writeFileSync(join(proc, `ns-${pid}`), '');
    symlinkSync(join(proc, `ns-${pid}`), join(proc, String(pid), 'ns', 'net'));
  };
  fakeProc(1, '/init.scope', 1);
  fakeProc(700, `/../../kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-2.scope`, 900);
  fakeProc(650, `/../../kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice/cri-containerd-1.scope`, 500);
  fakeProc(800, '/kubepods/besteffort/pod11111111-2222-3333-4444-555555555555/abc', 10);
  const scan = podPidsFromProc(proc);
  t.deepEqual(scan.get(uid)?.sort(), [650, 700]);
  t.deepEqual(scan.get('11111111-2222-3333-4444-555555555555'), [800]);
  t.deepEqual(findPodNetns(pod, proc, uid, () => scan), { path: join(proc, '650', 'ns', 'net') }, 'the oldest process: the sandbox');
  t.regex(findPodNetns(pod, proc).problem!, /no process/, 'without the scan, zeros find nothing');
});
