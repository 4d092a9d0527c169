/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps. Every map the agent manages is pinned by name under the agent's
 * bpffs directory, so that a restarted agent reuses them (and the sockets
 * already in the sockhash keep being spliced). Capacities are placeholders:
 * the loader sets the real ones before load.
 */
#ifndef KM_LIB_MAPS_H
#define KM_LIB_MAPS_H

/*
 * Fixed for the life of the loaded programs, set by the loader before load
 * (one object serves every node). Splicing off leaves connect-time
 * redirection alone: the benchmark uses it to see the two gains apart.
 */
const volatile bool km_splice_enabled = true;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct km_settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_settings_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_WORKLOADS);
	__type(key, struct km_capture_key);
	__type(value, struct km_workload);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_capture_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_EXCLUSIONS);
	__type(key, struct km_port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_xport_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, KM_DEFAULT_MAX_EXCLUSIONS);
	__type(key, struct km_cidr4_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_xcidr4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, KM_DEFAULT_MAX_EXCLUSIONS);
	__type(key, struct km_cidr6_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_xcidr6_v1 SEC(".maps");

/* LRU: an entry whose connect never completed ages out instead of leaking. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_CONNECTIONS);
	__type(key, __u64);
	__type(value, struct km_origdst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_odst_ck_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_CONNECTIONS);
	__type(key, struct km_sock_key);
	__type(value, struct km_origdst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_odst_tp_v1 SEC(".maps");

/* Sockets leave the sockhash by themselves when they close. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KM_DEFAULT_MAX_CONNECTIONS);
	__type(key, struct km_sock_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_socks_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KM_STAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_stats_v3 SEC(".maps");

/* km_flow.flags */
#define KM_FLOW_LOCAL_PEER 1   /* the proxy's socket to a pod on this node (set at connect, see lib/samenode.h) */
#define KM_FLOW_INBOUND_DIAL 2 /* the proxy's socket to an inbound-captured pod port (set at connect, see lib/inbound.h) */

/*
 * Per socket: how much it spliced lately, and whether its sends go to the
 * normal stack for good (a bulk flow, see lib/splice.h, or a same-node
 * socket that had to send through it once, see lib/samenode.h).
 */
struct km_flow {
	__u64 window_start_ns;
	__u64 window_bytes;
	__u32 bulk;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct km_flow);
} km_flow_v1 SEC(".maps");

/* Addresses of pods on this node, written by the agent (see lib/samenode.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_WORKLOADS);
	__type(key, struct km_addr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_local_v1 SEC(".maps");

/*
 * The pod ends the proxy's same-node connections expect: the proxy's end,
 * spliced first, leaves its peer's key here for the pod's end to find once
 * established. LRU: a pod end that never shows up (its cgroup outside the
 * attach point, an address translated on the way) ages out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_CONNECTIONS);
	__type(key, struct km_sock_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_expect_v1 SEC(".maps");

/* Inbound: a pod address and port -> the slot of its inbound listener. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_EXCLUSIONS);
	__type(key, struct km_inbound_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_inbound_v1 SEC(".maps");

/* The inbound listeners; a socket leaves by itself when the agent closes it (or dies). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, KM_DEFAULT_MAX_WORKLOADS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_insocks_v1 SEC(".maps");

/* This node's own addresses, written by the agent (see lib/inbound.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KM_MAX_NODE_ADDRESSES);
	__type(key, struct km_addr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_nodeaddr_v1 SEC(".maps");

/*
 * The proxy's connections to inbound-captured pod ports, from its connect
 * until established. LRU: a connect that never completes ages out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KM_DEFAULT_MAX_CONNECTIONS);
	__type(key, struct km_sock_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} km_dials_v1 SEC(".maps");

#endif
