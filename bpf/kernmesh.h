/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every key and value that crosses the kernel/user boundary.
 *
 * Included by the BPF C (after vmlinux.h) and by the native addon (after
 * <linux/types.h>). Must stay in sync with:
 *   - native/src/layout_check.cc (static_assert on every size below)
 *   - src/datapath/codec.ts     (the TypeScript encoders/decoders)
 * A layout change bumps the map's _vN suffix so that a pinned map of the old
 * layout is never reused by a program of the new one.
 */
#ifndef KERNMESH_H
#define KERNMESH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Map names (BPF object names are limited to 15 characters). */
#define KM_MAP_SETTINGS "km_settings_v1"
#define KM_MAP_CAPTURE "km_capture_v1"
#define KM_MAP_XPORT "km_xport_v1"
#define KM_MAP_XCIDR4 "km_xcidr4_v1"
#define KM_MAP_XCIDR6 "km_xcidr6_v1"
#define KM_MAP_ODST_COOKIE "km_odst_ck_v1"
#define KM_MAP_ODST_TUPLE "km_odst_tp_v1"
#define KM_MAP_SOCKS "km_socks_v1"
#define KM_MAP_STATS "km_stats_v3"
#define KM_MAP_INBOUND "km_inbound_v1"
#define KM_MAP_INSOCKS "km_insocks_v1"
#define KM_MAP_LOCAL "km_local_v1"
#define KM_MAP_EXPECT "km_expect_v1"
#define KM_MAP_NODEADDR "km_nodeaddr_v1"
#define KM_MAP_DIALS "km_dials_v1"

/* km_settings_v1: ARRAY with one entry, written by the agent at runtime. */
enum km_fail_mode {
	KM_FAIL_OPEN = 0,   /* proxy dead: leave the connect alone */
	KM_FAIL_CLOSED = 1, /* proxy dead: refuse the connect (EPERM) */
};

struct km_settings {
	__u64 heartbeat_ns;         /* agent's last heartbeat, CLOCK_MONOTONIC */
	__u64 heartbeat_timeout_ns; /* older than this = proxy dead */
	__u64 proxy_cgroup_id;      /* connects from this cgroup are the proxy's own */
	__u32 proxy_mark;           /* SO_MARK of the proxy's own sockets; 0 = unused */
	__u32 fail_mode;            /* enum km_fail_mode */
	__u16 outbound_port;        /* proxy outbound listener, host order */
	__u16 inbound_port;         /* proxy inbound listener, host order */
	__u32 cgroup_captures;      /* >0: also look up cgroup ids in km_capture */
};

/* km_capture_v1: HASH, which workloads are captured. */
enum km_capture_kind {
	KM_CAPTURE_NETNS = 1,  /* id = netns cookie (a pod) */
	KM_CAPTURE_CGROUP = 2, /* id = cgroup v2 id (a host process tree) */
};

struct km_capture_key {
	__u64 id;
	__u32 kind; /* enum km_capture_kind */
	__u32 pad;
};

struct km_workload {
	__u32 workload_id; /* agent-assigned, keys per-workload exclusions */
	__u32 flags;       /* reserved */
};

/* km_xport_v1: HASH, excluded destination ports; workload_id 0 = every workload. */
struct km_port_key {
	__u32 workload_id;
	__u16 port; /* host order */
	__u16 pad;
};

/*
 * km_xcidr4_v1 / km_xcidr6_v1: LPM_TRIE of excluded destination CIDRs. The
 * workload id is the first 32 bits of the prefix, so one trie holds the global
 * (id 0) and every per-workload list: prefixlen = 32 + CIDR length.
 */
struct km_cidr4_key {
	__u32 prefixlen;
	__u32 workload_id; /* big endian, so it sorts as the prefix's first bits */
	__u32 addr;        /* network order */
};

struct km_cidr6_key {
	__u32 prefixlen;
	__u32 workload_id; /* big endian */
	__u32 addr[4];     /* network order */
};

/* An original destination as the application asked for it. */
struct km_origdst {
	__u32 addr[4];     /* network order; IPv4 in addr[0] */
	__u16 port;        /* network order */
	__u16 family;      /* AF_INET or AF_INET6 */
	__u32 workload_id;
};

/*
 * A socket's 4-tuple in its network namespace. Used as the key of the
 * original-destination map (from the proxy's accepted socket's view:
 * local = proxy listener, remote = application) and of the sockhash (from
 * the socket's own view). IPv4 (also v4-mapped IPv6) uses addr[0] only.
 * In the sockhash, netns is the netns cookie for loopback pairs (the same
 * 4-tuple exists in every namespace) and 0 for any other address: those
 * are unique on a node, and the two ends of a proxy<->pod pair sit in
 * different namespaces but must find each other.
 */
struct km_sock_key {
	__u64 netns;
	__u32 local[4];
	__u32 remote[4];
	__u16 local_port;  /* host order */
	__u16 remote_port; /* host order */
	__u32 family;      /* AF_INET or AF_INET6 */
};

/*
 * km_inbound_v1: HASH, which arriving connections go to a pod's inbound
 * listener: the pod's own address and a port it serves -> a slot of
 * km_insocks_v1 (a SOCKMAP holding that pod's listening socket). Keyed by
 * address because sk_lookup programs cannot read their netns cookie; pod
 * addresses are unique on a node.
 */
struct km_inbound_key {
	__u32 addr[4]; /* network order; IPv4 in addr[0] */
	__u16 port;    /* host order */
	__u16 family;  /* AF_INET or AF_INET6 */
};

/*
 * km_local_v1: HASH, addresses of pods on this node (key -> __u8 1). The
 * proxy's connections to them are spliced with the pod's end of the
 * connection although the two sit in different network namespaces (see
 * lib/samenode.h). Never a loopback address: those are per namespace.
 */
struct km_addr_key {
	__u32 addr[4]; /* network order; IPv4 in addr[0] */
	__u32 family;  /* AF_INET or AF_INET6 */
};

/*
 * km_nodeaddr_v1: HASH, this node's own addresses (km_addr_key -> __u8 1).
 * A connection arriving at a pod from one of them is the node's (kubelet's
 * probes, host-network processes) and goes to the application directly,
 * unless the proxy made it (km_dials_v1). See lib/inbound.h.
 *
 * km_dials_v1: LRU_HASH, the proxy's connections to inbound-captured pod
 * ports, keyed as the pod will see them (km_sock_key, netns 0), from the
 * SYN until established.
 */

/* km_stats_v3: PERCPU_ARRAY of __u64 counters, one slot per enum value. */
enum km_stat {
	KM_STAT_CONNECT4_REDIRECTED = 0,
	KM_STAT_CONNECT6_REDIRECTED,
	KM_STAT_SKIP_NOT_CAPTURED,
	KM_STAT_SKIP_NOT_TCP,
	KM_STAT_SKIP_PROXY,
	KM_STAT_SKIP_LOOPBACK,
	KM_STAT_SKIP_EXCLUDED_PORT,
	KM_STAT_SKIP_EXCLUDED_CIDR,
	KM_STAT_FAIL_OPEN,
	KM_STAT_FAIL_CLOSED,
	KM_STAT_ORIGDST_SAVE_FAILED,
	KM_STAT_SOCKOPS_ACTIVE,
	KM_STAT_SOCKOPS_PASSIVE,
	KM_STAT_SOCKHASH_FAILED,
	KM_STAT_MSG_REDIRECTED,
	KM_STAT_BYTES_REDIRECTED,
	KM_STAT_MSG_MISS,
	KM_STAT_GETSOCKOPT_ANSWERED,
	KM_STAT_GETSOCKOPT_MISS,
	KM_STAT_GETSOCKOPT_LARGE_PASSED,
	KM_STAT_SOCKOPS_LOCAL_ACTIVE,  /* the proxy's end of a proxy<->local pod pair spliced */
	KM_STAT_SOCKOPS_LOCAL_PASSIVE, /* the pod's end of such a pair spliced */
	KM_STAT_LOCAL_LEFT,            /* a same-node socket sent through the stack once, so stays there */
	KM_STAT_INBOUND_ASSIGNED,      /* an arriving connection handed to a pod's inbound listener */
	KM_STAT_INBOUND_NODE_PASSED,   /* one from the node itself (not the proxy's) left to the application */
	KM_STAT_INBOUND_DIAL_SAVED,    /* the proxy's connect to an inbound-captured pod port recorded */
	KM_STAT__MAX,
};

/* Default capacities; the agent may set others before load. */
#define KM_DEFAULT_MAX_WORKLOADS 4096
#define KM_DEFAULT_MAX_EXCLUSIONS 16384
#define KM_DEFAULT_MAX_CONNECTIONS 65536
/* km_nodeaddr_v1's fixed capacity: a node has few addresses. */
#define KM_MAX_NODE_ADDRESSES 1024

#endif /* KERNMESH_H */
