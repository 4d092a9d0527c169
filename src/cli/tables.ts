// SPDX-License-Identifier: Apache-2.0
/** Plain aligned tables for terminal output, and one-line summaries of objects. */
import type { MeshObject } from '../config/objects.ts';

export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** What a person scanning `kernmesh get` wants to see of each kind. */
export function summarize(o: MeshObject, wide = false): string {
  if (wide) return JSON.stringify(o.spec);
  const s = o.spec as Record<string, unknown>;
  switch (o.kind) {
    case 'Service':
      return `ports ${(s.ports as Array<{ port: number; protocol?: string }>).map((p) => (p.protocol ? `${p.port}/${p.protocol}` : String(p.port))).join(',')}${(s.addresses as string[]).length ? ` vip ${(s.addresses as string[]).join(',')}` : ''}`;
    case 'Endpoints': {
      const eps = s.endpoints as Array<{ ready: boolean }>;
      return `${eps.filter((e) => e.ready).length}/${eps.length} ready`;
    }
    case 'Route':
      return `service ${String(s.service)}, ${(s.rules as unknown[]).length} rules`;
    case 'ClusterPolicy':
      return `service ${String(s.service)}, lb ${(s.loadBalancer as { type: string }).type}`;
    case 'AuthorizationPolicy':
      return `${String(s.action)} ${s.service ? `service ${String(s.service)}` : 'namespace'}`;
    case 'RateLimit':
      return `service ${String(s.service)}, ${String(s.maxTokens)} per ${String(s.fillInterval)}`;
    case 'Workload':
      return `${String(s.address)}${s.service ? ` -> ${String(s.service)}` : ''}`;
    case 'MeshSettings':
      return `fail-${String(s.failMode)}`;
  }
}
