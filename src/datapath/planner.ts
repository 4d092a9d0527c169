// SPDX-License-Identifier: Apache-2.0
/**
 * Desired state + current map contents -> the minimal list of map writes.
 * Pure: no kernel, no I/O, so it is unit-tested on plain data.
 */
import {
  type CaptureKey,
  type Cidr,
  decodeCaptureKey,
  decodeWorkload,
  decodeAddrKey,
  encodeAddrKey,
  encodeCaptureKey,
  encodeCidrKey,
  encodePortKey,
  encodeWorkload,
} from './codec.ts';

export type PlannedMap = 'km_capture_v1' | 'km_xport_v1' | 'km_xcidr4_v1' | 'km_xcidr6_v1' | 'km_local_v1' | 'km_nodeaddr_v1';

/** Current contents, keyed by the key's hex so that equal bytes compare equal. */
export type MapContents = Record<PlannedMap, Map<string, Buffer>>;

export interface ResolvedWorkload {
  name: string;
  key: CaptureKey;
  excludedPorts: number[];
  excludedCidrs: Cidr[];
  /** The pod's own addresses (same-node splice targets). */
  addresses?: string[];
}

/** What is not per workload. */
export interface PlanGlobals {
  excludedPorts: number[];
  excludedCidrs: Cidr[];
  /** Other pods on this node the proxy's connections to are spliced. */
  localAddresses?: string[];
  /** This node's own addresses: connections from them (not the proxy's) reach pods' applications directly. */
  nodeAddresses?: string[];
}

export interface MapOp {
  map: PlannedMap;
  action: 'upsert' | 'delete';
  key: Buffer;
  value?: Buffer;
  /** For the plan a person reads (dry run, logs). */
  why: string;
}

export interface Plan {
  ops: MapOp[];
  /** Workload name -> the id its exclusions are keyed by. */
  ids: Map<string, number>;
  /** Entries each map holds once the plan is applied. */
  sizes: Record<PlannedMap, number>;
  /** The most entries each map holds at any moment while the plan is applied. */
  peak: Record<PlannedMap, number>;
}

const EXCLUSION_VALUE = Buffer.from([1]);
const LOCAL_VALUE = Buffer.from([1]);

export function emptyContents(): MapContents {
  return { km_capture_v1: new Map(), km_xport_v1: new Map(), km_xcidr4_v1: new Map(), km_xcidr6_v1: new Map(), km_local_v1: new Map(), km_nodeaddr_v1: new Map() };
}

/** Keeps each existing workload's id; new ones get ids no current entry uses. */
export function assignIds(current: MapContents, workloads: ResolvedWorkload[]): Map<string, number> {
  const byKey = new Map<string, number>();
  for (const [hex, value] of current.km_capture_v1) byKey.set(hex, decodeWorkload(value));
  const used = new Set(byKey.values());
  const ids = new Map<string, number>();
  let next = 1;
  for (const w of workloads) {
    const existing = byKey.get(encodeCaptureKey(w.key).toString('hex'));
    if (existing !== undefined) {
      ids.set(w.name, existing);
      continue;
    }
    while (used.has(next)) next++;
    used.add(next);
    ids.set(w.name, next);
  }
  return ids;
}

/**
 * Order matters to the kernel reading these maps mid-plan: exclusions are
 * added before the capture entry that makes them matter and removed after
 * it, so no connect ever sees a captured workload without its exclusions.
 * Released workloads go first, so a full capture map can still churn.
 * Local addresses only decide which connections are spliced (a pair spliced
 * or not carries the same bytes), so they need no order beyond that: stale
 * ones go first, so a full map can churn too. Node addresses likewise.
 */
export function planMaps(
  current: MapContents,
  workloads: ResolvedWorkload[],
  global: PlanGlobals,
  options: { prune: boolean },
): Plan {
  const ids = assignIds(current, workloads);
  const want = emptyContents();
  const label = new Map<string, string>();
  const put = (map: PlannedMap, key: Buffer, value: Buffer, why: string) => {
    const hex = key.toString('hex');
    want[map].set(hex, value);
    label.set(`${map}:${hex}`, why);
  };

  const exclusionsOf = (id: number, who: string, ports: number[], cidrs: Cidr[]) => {
    for (const p of ports) put('km_xport_v1', encodePortKey(id, p), EXCLUSION_VALUE, `${who} excludes port ${p}`);
    for (const c of cidrs) {
      put(c.family === 4 ? 'km_xcidr4_v1' : 'km_xcidr6_v1', encodeCidrKey(id, c), EXCLUSION_VALUE, `${who} excludes ${c.address.length === 4 ? 'IPv4' : 'IPv6'} /${c.prefix}`);
    }
  };
  exclusionsOf(0, 'mesh', global.excludedPorts, global.excludedCidrs);
  for (const a of global.localAddresses ?? []) put('km_local_v1', encodeAddrKey(a), LOCAL_VALUE, `splice to local pod ${a}`);
  for (const a of global.nodeAddresses ?? []) put('km_nodeaddr_v1', encodeAddrKey(a), LOCAL_VALUE, `node address ${a}: its connections reach pods directly`);
  for (const w of workloads) {
    const id = ids.get(w.name)!;
    put('km_capture_v1', encodeCaptureKey(w.key), encodeWorkload(id), `capture ${w.name} (${w.key.kind} ${w.key.id}) as #${id}`);
    exclusionsOf(id, w.name, w.excludedPorts, w.excludedCidrs);
    for (const a of w.addresses ?? []) put('km_local_v1', encodeAddrKey(a), LOCAL_VALUE, `splice to ${w.name} at ${a}`);
  }

  const upserts = (map: PlannedMap): MapOp[] =>
    [...want[map]]
      .filter(([hex, value]) => !current[map].get(hex)?.equals(value))
      .map(([hex, value]) => ({ map, action: 'upsert', key: Buffer.from(hex, 'hex'), value, why: label.get(`${map}:${hex}`)! }));
  const deletes = (map: PlannedMap): MapOp[] =>
    options.prune
      ? [...current[map].keys()]
          .filter((hex) => !want[map].has(hex))
          .map((hex) => ({ map, action: 'delete', key: Buffer.from(hex, 'hex'), why: describeStale(map, hex) }))
      : [];

  const exclusionMaps: PlannedMap[] = ['km_xport_v1', 'km_xcidr4_v1', 'km_xcidr6_v1'];
  const ops = [
    ...deletes('km_local_v1'),
    ...deletes('km_nodeaddr_v1'),
    ...deletes('km_capture_v1'),
    ...exclusionMaps.flatMap(upserts),
    ...upserts('km_capture_v1'),
    ...exclusionMaps.flatMap(deletes),
    ...upserts('km_local_v1'),
    ...upserts('km_nodeaddr_v1'),
  ];
  const sizes = {} as Record<PlannedMap, number>;
  const peak = {} as Record<PlannedMap, number>;
  for (const map of Object.keys(want) as PlannedMap[]) {
    const union = new Set([...want[map].keys(), ...current[map].keys()]).size;
    sizes[map] = options.prune ? want[map].size : union;
    // Capture and local entries are deleted before any is added; exclusions only after all adds.
    peak[map] = map === 'km_capture_v1' || map === 'km_local_v1' || map === 'km_nodeaddr_v1' ? sizes[map] : union;
  }
  return { ops, ids, sizes, peak };
}

function describeStale(map: PlannedMap, hex: string): string {
  if (map === 'km_capture_v1') {
    const k = decodeCaptureKey(Buffer.from(hex, 'hex'));
    return `release ${k.kind} ${k.id} (no longer desired)`;
  }
  if (map === 'km_local_v1') return `stop splicing to ${decodeAddrKey(Buffer.from(hex, 'hex'))} (no longer a local pod)`;
  if (map === 'km_nodeaddr_v1') return `forget node address ${decodeAddrKey(Buffer.from(hex, 'hex'))} (no longer the node's)`;
  return `drop stale exclusion ${hex}`;
}

/** One line per op, for --dry-run and debug logs. */
export function formatPlan(plan: Plan): string[] {
  return plan.ops.map((op) => `${op.action === 'upsert' ? '+' : '-'} ${op.map}: ${op.why}`);
}
