// SPDX-License-Identifier: Apache-2.0
// The node agent on Kubernetes: a fake API server (real list/watch) names the
// pods; the pods are real (a network namespace, a cgroup in a kubepods tree
// laid out as the systemd cgroup driver does, a process in both); Redis is
// real; interception is eBPF. A pod is in the mesh when its VIP request
// reaches the backend through the proxy, and out of it when the same
// request is refused (nothing listens on the VIP inside the pod).
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { stringify } from 'yaml';
import { Agent } from '../../src/agent/agent.ts';
import { parseAgentConfig } from '../../src/agent/config.ts';
import { MeshStore } from '../../src/config/store.ts';
import { EbpfDatapath, Scratch, cgroupId, inCgroup } from '../../src/datapath/index.ts';
import { freePort } from '../../src/ports.ts';
import { childLogger, silentLogger } from '../../src/log.ts';
import { RedisServer } from '../redis/helpers/redis-server.ts';
import { FakeApiServer } from '../kube/helpers/fake-apiserver.ts';
import { namespace, pod, until } from '../kube/helpers/objects.ts';
import { VIP4 } from './helpers/bed.ts';
import { reviewsMesh } from './helpers/agent-bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

interface RealPod {
  name: string;
  uid: string;
  netns: string;
  netnsPath: string;
  cgroup: string;
  proc: ChildProcess;
}

/** Real pods: a netns with the VIP on lo, a kubepods-style cgroup, a process in both. */
class PodBed {
  readonly scratch: Scratch;
  readonly kubepods: string;
  private readonly pods: RealPod[] = [];

  constructor(scratch: Scratch) {
    this.scratch = scratch;
    this.kubepods = scratch.cgroup('kubepods.slice');
    scratch.cgroup('kubepods.slice/kubepods-besteffort.slice');
  }

  make(name: string): RealPod {
    const uid = randomUUID();
    const podCg = this.scratch.cgroup(`kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice`);
    const container = this.scratch.cgroup(`${podCg.slice(this.scratch.cgroupRoot.length + 1)}/cri-containerd-${uid.slice(0, 8)}.scope`);
    const netns = `${this.scratch.id}-${name}`;
    execFileSync('ip', ['netns', 'add', netns]);
    const p: RealPod = { name, uid, netns, netnsPath: `/run/netns/${netns}`, cgroup: container, proc: undefined as never };
    this.pods.push(p);
    execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['-n', netns, 'addr', 'add', `${VIP4}/32`, 'dev', 'lo']);
    // Short-lived even if this run is killed before cleanup (the next run's sweep cannot end it).
    const [sh, argv] = inCgroup(container, p.netnsPath, 'sleep', ['180']);
    p.proc = spawn(sh, argv, { stdio: 'ignore' });
    return p;
  }

  /** curl the VIP from inside the pod (its netns and its cgroup): the body, or null when refused. */
  async curl(p: RealPod): Promise<string | null> {
    const [sh, argv] = inCgroup(p.cgroup, p.netnsPath, 'curl', ['-sS', '--max-time', '3', `http://${VIP4}/`]);
    const r = await promisify(execFile)(sh, argv).catch(() => null);
    return r ? r.stdout : null;
  }

  async cleanup(): Promise<void> {
    for (const p of this.pods) {
      if (p.proc.exitCode === null && p.proc.signalCode === null) {
        const gone = new Promise((r) => p.proc.once('exit', r));
        p.proc.kill('SIGKILL');
        await gone;
      }
      try {
        execFileSync('ip', ['netns', 'del', p.netns], { stdio: 'pipe' });
      } catch {
        /* already gone */
      }
    }
  }
}

function kubeconfig(dir: string, server: string): string {
  const file = join(dir, 'kubeconfig');
  writeFileSync(file, stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'fake', cluster: { server, 'insecure-skip-tls-verify': true } }], users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'u' } }], 'current-context': 'fake' }));
  return file;
}

type Report = { workloads: Array<{ name: string; namespace: string; ok: boolean; reason?: string }> };

kernelTest('on Kubernetes: pods are captured when their namespace is labelled, follow adds, opt-outs and deletes, and survive an agent restart without a second attach', async (t) => {
  const redis = await new RedisServer().start();
  const api = new FakeApiServer();
  await api.start();
  const scratch = new Scratch('kube');
  const dir = mkdtempSync(join(tmpdir(), 'kernmesh-kube-'));
  let agent: Agent | undefined;
  let bed: PodBed | undefined;
  try {
    scratch.setup();
    bed = new PodBed(scratch);
    const store = new MeshStore(redis.client());
    await reviewsMesh(t, store);
    scratch.enter('kubepods.slice/kernmesh-agent'); // the proxy's own sockets sit under kubepods, as in a DaemonSet
    const config = parseAgentConfig({
      node: 'node-a',
      mode: 'ebpf',
      redis: { url: redis.url },
      cachePath: join(dir, 'cache.json'),
      pinDir: scratch.pinDir,
      adminPort: await freePort(),
      kubernetes: { enabled: true, kubeconfig: kubeconfig(dir, api.url), procRoot: '/proc', cgroupRoot: scratch.cgroupRoot },
    });
    const report = () => (agent as unknown as { statusReport(): Report }).statusReport().workloads;

    // Pods that were running before anything was labelled.
    const p1 = bed.make('p1');
    const p2 = bed.make('p2');
    api.put('namespaces', namespace('shop', false));
    api.put('pods', pod('shop', 'p1', 'node-a', { uid: p1.uid }));
    api.put('pods', pod('shop', 'p2', 'node-a', { uid: p2.uid }));
    api.put('pods', pod('shop', 'elsewhere', 'node-b'));
    agent = new Agent(config, process.env.KM_DEBUG ? childLogger("agent") : silentLogger);
    await agent.start();
    await agent.ready();
    t.is(await bed.curl(p1), null, 'an unlabelled namespace is not captured');
    t.is((agent.datapath as EbpfDatapath).currentSettings().proxyCgroupId, cgroupId(scratch.cgroup('kubepods.slice/kernmesh-agent')), 'the agent found its own cgroup');
    t.deepEqual(report(), []);

    // Labelling the namespace brings in the pods already there.
    api.put('namespaces', namespace('shop', true));
    await until(async () => (await bed!.curl(p1)) !== null, 'p1 to be captured');
    t.regex((await bed.curl(p2)) ?? '', /"backend":"reviews-v1"/);
    // A pod the API names but whose cgroup is nowhere: listed with the reason.
    api.put('pods', pod('shop', 'ghost', 'node-a'));
    await until(() => report().some((w) => w.name === 'ghost'), 'the ghost pod in the report');
    t.regex(report().find((w) => w.name === 'ghost')!.reason ?? '', /no cgroup for pod uid/);
    t.deepEqual(report().filter((w) => w.ok).map((w) => w.name).sort(), ['p1', 'p2']);
    t.false(report().some((w) => w.name === 'elsewhere'), 'pods of other nodes are not ours');

    // A pod added later.
    const p3 = bed.make('p3');
    api.put('pods', pod('shop', 'p3', 'node-a', { uid: p3.uid }));
    await until(async () => (await bed!.curl(p3)) !== null, 'p3 to be captured');

    // A pod recreated under the same name (a StatefulSet's): new uid, new namespace, new listeners there.
    const p2b = bed.make('p2b');
    api.put('pods', pod('shop', 'p2', 'node-a', { uid: p2b.uid }));
    await until(async () => (await bed!.curl(p2b)) !== null && (await bed!.curl(p2)) === null, 'the new p2 captured, the old one released');

    // Opting out releases the pod.
    api.put('pods', pod('shop', 'p1', 'node-a', { uid: p1.uid, annotations: { 'kernmesh.io/capture': 'disabled' } }));
    await until(async () => (await bed!.curl(p1)) === null, 'p1 to be released');
    t.regex(report().find((w) => w.name === 'p1')!.reason ?? '', /opted out/);

    // Restart: the pinned links are reused (nothing attached twice), and the pods are captured again.
    const dp = agent.datapath as EbpfDatapath;
    const before = dp.programIds();
    const attached = () => execFileSync('bpftool', ['cgroup', 'show', bed!.kubepods]).toString().trim().split('\n').length;
    const attachedBefore = attached();
    await agent.stop();
    agent = new Agent(config, process.env.KM_DEBUG ? childLogger("agent") : silentLogger);
    await agent.start();
    await agent.ready();
    t.is(attached(), attachedBefore, 'no duplicate attach after a restart');
    t.notDeepEqual((agent.datapath as EbpfDatapath).programIds(), before, 'new programs switched in place');
    await until(async () => (await bed!.curl(p3)) !== null, 'p3 captured after the restart');
    t.is(await bed.curl(p1), null, 'the opted-out pod stays out after the restart');

    // A pod deleted from the API is released.
    api.put('pods', pod('shop', 'p1', 'node-a', { uid: p1.uid }));
    api.remove('pods', 'p3', 'shop');
    await until(async () => (await bed!.curl(p3)) === null && (await bed!.curl(p1)) !== null, 'p3 released and p1 back');

    // Removing the label releases every pod of the namespace.
    api.put('namespaces', namespace('shop', false));
    await until(async () => (await bed!.curl(p1)) === null && (await bed!.curl(p2b)) === null, 'everything released');
    t.deepEqual(report(), []);
    api.put('namespaces', namespace('shop', true));
    await until(async () => (await bed!.curl(p1)) !== null, 'p1 back with the label');

    // The DaemonSet's preStop: `kernmesh drain` stops interception and removes programs and pins.
    const drained = await promisify(execFile)(process.execPath, [new URL('../../src/cli/main.ts', import.meta.url).pathname, 'drain', '--admin', `127.0.0.1:${config.adminPort}`]);
    t.regex(drained.stdout, /drained/);
    t.false(existsSync(scratch.pinDir), 'pins removed');
    t.is(execFileSync('bpftool', ['cgroup', 'show', bed.kubepods]).toString().trim(), '', 'nothing attached');
    t.is(await bed.curl(p1), null, 'no longer intercepted');
    // Later changes change nothing.
    api.put('namespaces', namespace('shop', false));
    await new Promise((r) => setTimeout(r, 100));
    t.false(existsSync(scratch.pinDir));
  } finally {
    await agent?.stop({ detach: true }).catch(() => {});
    await bed?.cleanup();
    const problems = await scratch.cleanup();
    await api.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
    t.deepEqual(problems, []);
  }
});
