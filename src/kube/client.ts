// SPDX-License-Identifier: Apache-2.0
/**
 * Where the Kubernetes API is: the pod's service account when running in a
 * cluster, else a kubeconfig (a path given, KUBECONFIG, ~/.kube/config).
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KmError } from '../errors.ts';

export function loadKubeConfig(options: { kubeconfig?: string; env?: NodeJS.ProcessEnv } = {}): KubeConfig {
  const env = options.env ?? process.env;
  const kc = new KubeConfig();
  try {
    if (options.kubeconfig) {
      kc.loadFromFile(options.kubeconfig);
    } else if (env.KUBERNETES_SERVICE_HOST && existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token')) {
      kc.loadFromCluster();
    } else if (env.KUBECONFIG || existsSync(join(homedir(), '.kube', 'config'))) {
      kc.loadFromDefault();
    } else {
      throw new Error('not running in a pod with a service account, and no kubeconfig: pass --kubeconfig FILE or set KUBECONFIG');
    }
  } catch (err) {
    throw new KmError('KM_ERR_KUBECONFIG', `cannot load the Kubernetes configuration: ${(err as Error).message}`, { cause: err });
  }
  if (!kc.getCurrentCluster()) throw new KmError('KM_ERR_KUBECONFIG', 'the kubeconfig has no current cluster: set current-context');
  return kc;
}

/** A config for one API server URL with a bearer token (tests, and `--apiserver` style use). */
export function kubeConfigFor(server: string, token = 'kernmesh'): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  return kc;
}
