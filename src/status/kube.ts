// SPDX-License-Identifier: Apache-2.0
/**
 * What Kubernetes says should be in the mesh, for `kernmesh status` on a
 * cluster: every pod of a labelled namespace that an agent would capture
 * (the agent's own decision function, so the two cannot disagree). A pod
 * the API lists but no agent reports (its node has no agent, or the agent
 * has not got to it) shows up as "should be captured but is not".
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { type CaptureSettings, DEFAULT_CAPTURE, decidePods } from '../kube/pods.ts';

export interface ExpectedPod {
  namespace: string;
  name: string;
  node: string;
}

export async function expectedPods(kc: KubeConfig, capture: CaptureSettings = DEFAULT_CAPTURE): Promise<{ namespaces: string[]; pods: ExpectedPod[] }> {
  const api = kc.makeApiClient(CoreV1Api);
  const nsList = await api.listNamespace({ labelSelector: `${capture.namespaceLabel}=enabled` });
  const namespaces = nsList.items.map((n) => n.metadata!.name!).sort();
  const pods: ExpectedPod[] = [];
  for (const ns of namespaces) {
    const list = await api.listNamespacedPod({ namespace: ns });
    // Pods not yet scheduled have no node: not anyone's to capture yet.
    for (const node of new Set(list.items.map((p) => p.spec?.nodeName).filter((n): n is string => !!n))) {
      for (const d of decidePods(nsList.items, list.items, node, capture)) if (d.capture) pods.push({ namespace: d.namespace, name: d.name, node });
    }
  }
  return { namespaces, pods };
}
