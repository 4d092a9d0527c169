/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The connect-time decision: is this connect one the proxy should see?
 * Every answer is computed from the maps on each connect; nothing negative is
 * remembered, so enrolling a workload takes effect on its very next connect.
 */
#ifndef KM_LIB_CAPTURE_H
#define KM_LIB_CAPTURE_H

/* Deepest cgroup level searched for a captured ancestor (pod cgroups sit at 3-5). */
#define KM_MAX_CGROUP_DEPTH 12

static __always_inline struct km_settings *km_settings_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&km_settings_v1, &zero);
}

/* The captured workload this connect belongs to, by netns then by cgroup. */
static __always_inline struct km_workload *km_workload_of(struct bpf_sock_addr *ctx,
							   const struct km_settings *s)
{
	struct km_capture_key key = {
		.id = bpf_get_netns_cookie(ctx),
		.kind = KM_CAPTURE_NETNS,
	};
	struct km_workload *wl = bpf_map_lookup_elem(&km_capture_v1, &key);

	if (wl || !s->cgroup_captures)
		return wl;

	key.kind = KM_CAPTURE_CGROUP;
	for (int level = 1; level <= KM_MAX_CGROUP_DEPTH; level++) {
		key.id = bpf_get_current_ancestor_cgroup_id(level);
		if (!key.id)
			break;
		wl = bpf_map_lookup_elem(&km_capture_v1, &key);
		if (wl)
			return wl;
	}
	return NULL;
}

/* The proxy's own connects go where they were aimed: by mark or by cgroup. */
static __always_inline bool km_is_proxy(struct bpf_sock_addr *ctx, const struct km_settings *s)
{
	__u32 mark = 0;

	if (s->proxy_cgroup_id && bpf_get_current_cgroup_id() == s->proxy_cgroup_id)
		return true;
	if (s->proxy_mark && !bpf_getsockopt(ctx, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) &&
	    mark == s->proxy_mark)
		return true;
	return false;
}

/*
 * At connect: what the proxy's socket to this destination needs later (the
 * km_flow flags: lib/samenode.h, lib/inbound.h), kept in its sk_storage.
 * Only connect4/6 know whose connect it is: sockops runs in softirq.
 */
static __always_inline void km_tag_proxy_dial(struct bpf_sock_addr *ctx, const struct km_settings *s, __u32 flags)
{
	struct km_flow *f;

	if (!flags || ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP || !km_is_proxy(ctx, s))
		return;
	f = bpf_sk_storage_get(&km_flow_v1, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (f)
		f->flags |= flags;
}

static __always_inline bool km_port_excluded(__u32 workload_id, __u16 port)
{
	struct km_port_key key = { .workload_id = workload_id, .port = port };

	if (bpf_map_lookup_elem(&km_xport_v1, &key))
		return true;
	key.workload_id = 0;
	return bpf_map_lookup_elem(&km_xport_v1, &key) != NULL;
}

static __always_inline bool km_cidr4_excluded(__u32 workload_id, __u32 addr)
{
	struct km_cidr4_key key = {
		.prefixlen = 64,
		.workload_id = bpf_htonl(workload_id),
		.addr = addr,
	};

	if (bpf_map_lookup_elem(&km_xcidr4_v1, &key))
		return true;
	key.workload_id = 0;
	return bpf_map_lookup_elem(&km_xcidr4_v1, &key) != NULL;
}

static __always_inline bool km_cidr6_excluded(__u32 workload_id, const __u32 *addr)
{
	struct km_cidr6_key key = {
		.prefixlen = 160,
		.workload_id = bpf_htonl(workload_id),
		.addr = { addr[0], addr[1], addr[2], addr[3] },
	};

	if (bpf_map_lookup_elem(&km_xcidr6_v1, &key))
		return true;
	key.workload_id = 0;
	return bpf_map_lookup_elem(&km_xcidr6_v1, &key) != NULL;
}

static __always_inline bool km_proxy_alive(const struct km_settings *s)
{
	return s->heartbeat_ns && bpf_ktime_get_ns() - s->heartbeat_ns <= s->heartbeat_timeout_ns;
}

enum km_verdict {
	KM_V_PASS,     /* leave the connect alone */
	KM_V_REDIRECT, /* rewrite to the proxy */
	KM_V_REFUSE,   /* fail closed */
};

/*
 * Everything but the address family: the caller has already counted and
 * passed loopback destinations and looked up exclusions by CIDR.
 */
static __always_inline enum km_verdict km_decide(struct bpf_sock_addr *ctx,
						 const struct km_settings *s,
						 struct km_workload **wl_out)
{
	struct km_workload *wl;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP) {
		km_count(KM_STAT_SKIP_NOT_TCP, 1);
		return KM_V_PASS;
	}
	wl = km_workload_of(ctx, s);
	if (!wl) {
		km_count(KM_STAT_SKIP_NOT_CAPTURED, 1);
		return KM_V_PASS;
	}
	if (km_is_proxy(ctx, s)) {
		km_count(KM_STAT_SKIP_PROXY, 1);
		return KM_V_PASS;
	}
	if (km_port_excluded(wl->workload_id, bpf_ntohs((__u16)ctx->user_port))) {
		km_count(KM_STAT_SKIP_EXCLUDED_PORT, 1);
		return KM_V_PASS;
	}
	*wl_out = wl;
	return KM_V_REDIRECT;
}

/* Called last, once the destination is known to be one to redirect. */
static __always_inline enum km_verdict km_liveness(const struct km_settings *s)
{
	if (km_proxy_alive(s))
		return KM_V_REDIRECT;
	if (s->fail_mode == KM_FAIL_CLOSED) {
		km_count(KM_STAT_FAIL_CLOSED, 1);
		return KM_V_REFUSE;
	}
	km_count(KM_STAT_FAIL_OPEN, 1);
	return KM_V_PASS;
}

/* Remember where the application wanted to go, for the proxy to ask later. */
static __always_inline bool km_save_origdst(struct bpf_sock_addr *ctx, const struct km_origdst *dst)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (bpf_map_update_elem(&km_odst_ck_v1, &cookie, dst, BPF_ANY)) {
		km_count(KM_STAT_ORIGDST_SAVE_FAILED, 1);
		return false;
	}
	return true;
}

#endif
