// SPDX-License-Identifier: Apache-2.0
/** Weighted round robin, smooth (nginx's): no bursts to the heaviest endpoint. */
import type { EndpointInfo } from '../routing/table.ts';

export class RoundRobin {
  private current = new WeakMap<EndpointInfo[], number[]>();

  pick(eps: EndpointInfo[]): EndpointInfo | undefined {
    if (eps.length <= 1) return eps[0];
    let cw = this.current.get(eps);
    if (!cw) {
      cw = new Array<number>(eps.length).fill(0);
      this.current.set(eps, cw);
    }
    let total = 0;
    let best = 0;
    for (let i = 0; i < eps.length; i++) {
      const w = eps[i]!.weight;
      cw[i]! += w;
      total += w;
      if (cw[i]! > cw[best]!) best = i;
    }
    cw[best]! -= total;
    return eps[best];
  }
}
