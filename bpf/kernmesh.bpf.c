// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kernmesh datapath entry points. Each one only dispatches; the decisions
 * live in the lib/ headers. See DESIGN.md "The path of one request".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kernmesh.h"
#include "lib/consts.h"
#include "lib/maps.h"
#include "lib/stats.h"
#include "lib/addr.h"
#include "lib/capture.h"
#include "lib/splice.h"
#include "lib/samenode.h"
#include "lib/origdst.h"
#include "lib/inbound.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/connect4")
int km_connect4(struct bpf_sock_addr *ctx)
{
	struct km_settings *s = km_settings_get();
	struct km_workload *wl = NULL;
	struct km_origdst dst = {};
	__u32 addr = ctx->user_ip4;
	struct km_addr_key local = { .addr = { addr }, .family = AF_INET };

	if (!s)
		return KM_ALLOW;
	km_tag_proxy_dial(ctx, s, km_local_peer_flag(&local) | km_inbound_dial_flag(&local, bpf_ntohs((__u16)ctx->user_port)));
	if (km_decide(ctx, s, &wl) != KM_V_REDIRECT || !wl)
		return KM_ALLOW;
	if (km_ip4_is_loopback(addr)) {
		km_count(KM_STAT_SKIP_LOOPBACK, 1);
		return KM_ALLOW;
	}
	if (km_cidr4_excluded(wl->workload_id, addr)) {
		km_count(KM_STAT_SKIP_EXCLUDED_CIDR, 1);
		return KM_ALLOW;
	}
	switch (km_liveness(s)) {
	case KM_V_REFUSE:
		return KM_DENY;
	case KM_V_PASS:
		return KM_ALLOW;
	default:
		break;
	}

	dst.addr[0] = addr;
	dst.port = (__u16)ctx->user_port;
	dst.family = AF_INET;
	dst.workload_id = wl->workload_id;
	if (!km_save_origdst(ctx, &dst))
		return KM_ALLOW;
	ctx->user_ip4 = bpf_htonl(0x7f000001);
	ctx->user_port = bpf_htons(s->outbound_port);
	km_count(KM_STAT_CONNECT4_REDIRECTED, 1);
	return KM_ALLOW;
}

SEC("cgroup/connect6")
int km_connect6(struct bpf_sock_addr *ctx)
{
	struct km_settings *s = km_settings_get();
	struct km_workload *wl = NULL;
	struct km_origdst dst = {};
	__u32 addr[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	bool mapped = km_ip6_is_v4mapped(addr);
	bool excluded;
	/* A v4-mapped destination is IPv4 on the wire: the pod's end is keyed so. */
	struct km_addr_key local = {
		.addr = { mapped ? addr[3] : addr[0], mapped ? 0 : addr[1], mapped ? 0 : addr[2], mapped ? 0 : addr[3] },
		.family = mapped ? AF_INET : AF_INET6,
	};

	if (!s)
		return KM_ALLOW;
	km_tag_proxy_dial(ctx, s, km_local_peer_flag(&local) | km_inbound_dial_flag(&local, bpf_ntohs((__u16)ctx->user_port)));
	if (km_decide(ctx, s, &wl) != KM_V_REDIRECT || !wl)
		return KM_ALLOW;
	if (mapped ? km_ip4_is_loopback(addr[3]) : km_ip6_is_loopback(addr)) {
		km_count(KM_STAT_SKIP_LOOPBACK, 1);
		return KM_ALLOW;
	}
	excluded = mapped ? km_cidr4_excluded(wl->workload_id, addr[3])
			  : km_cidr6_excluded(wl->workload_id, addr);
	if (excluded) {
		km_count(KM_STAT_SKIP_EXCLUDED_CIDR, 1);
		return KM_ALLOW;
	}
	switch (km_liveness(s)) {
	case KM_V_REFUSE:
		return KM_DENY;
	case KM_V_PASS:
		return KM_ALLOW;
	default:
		break;
	}

	/* A v4-mapped destination is IPv4 on the wire: the proxy sees it as such. */
	if (mapped) {
		dst.addr[0] = addr[3];
		dst.family = AF_INET;
	} else {
		__builtin_memcpy(dst.addr, addr, sizeof(dst.addr));
		dst.family = AF_INET6;
	}
	dst.port = (__u16)ctx->user_port;
	dst.workload_id = wl->workload_id;
	if (!km_save_origdst(ctx, &dst))
		return KM_ALLOW;
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = mapped ? bpf_htonl(0x0000ffff) : 0;
	ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
	ctx->user_port = bpf_htons(s->outbound_port);
	km_count(KM_STAT_CONNECT6_REDIRECTED, 1);
	return KM_ALLOW;
}

SEC("sockops")
int km_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		km_inbound_on_connect(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		km_inbound_on_established(skops);
		if (!km_on_active_established(skops))
			km_local_on_active(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (!km_on_passive_established(skops))
			km_local_on_passive(skops);
		break;
	default:
		break;
	}
	return 1;
}

SEC("sk_msg")
int km_sk_msg(struct sk_msg_md *msg)
{
	__u32 local6[4] = {}, remote6[4] = {};
	struct km_sock_key key, peer;
	__u32 family = msg->family;
	__u32 size = msg->size;
	struct km_flow *f;

	if (family == AF_INET6) {
		KM_READ6(local6, msg, local_ip6);
		KM_READ6(remote6, msg, remote_ip6);
	}
	km_key_fill(&key, bpf_get_netns_cookie(msg), family, msg->local_ip4, local6,
		    msg->remote_ip4, remote6, (__u16)msg->local_port,
		    (__u16)bpf_ntohl(msg->remote_port));
	km_key_node_scope(&key);
	km_key_peer(&peer, &key);
	f = km_flow_of(msg);
	if (km_bulk_flow(f, size))
		return SK_PASS;
	if (bpf_msg_redirect_hash(msg, &km_socks_v1, &peer, BPF_F_INGRESS) == SK_PASS) {
		km_count(KM_STAT_MSG_REDIRECTED, 1);
		km_count(KM_STAT_BYTES_REDIRECTED, size);
		return SK_PASS;
	}
	/* The peer is not spliced (yet, or any more): the normal stack carries it. */
	km_count(KM_STAT_MSG_MISS, 1);
	km_on_local_miss(&key, f);
	return SK_PASS;
}

SEC("cgroup/getsockopt")
int km_getsockopt(struct bpf_sockopt *ctx)
{
	struct km_origdst *dst;

	if (ctx->optname == SO_ORIGINAL_DST && (ctx->level == SOL_IP || ctx->level == SOL_IPV6)) {
		dst = km_origdst_of(ctx);
		if (dst)
			return ctx->level == SOL_IP ? km_answer_ip4(ctx, dst) : km_answer_ip6(ctx, dst);
		km_count(KM_STAT_GETSOCKOPT_MISS, 1);
	}
	/*
	 * Documentation/bpf/prog_cgroup_sockopt.rst: a program only sees the
	 * first PAGE_SIZE bytes of a larger value; optlen 0 tells the kernel to
	 * hand the caller its own untruncated answer.
	 */
	if (ctx->optlen > PAGE_SIZE) {
		ctx->optlen = 0;
		km_count(KM_STAT_GETSOCKOPT_LARGE_PASSED, 1);
	}
	return KM_ALLOW;
}

SEC("sk_lookup")
int km_sk_lookup(struct bpf_sk_lookup *ctx)
{
	km_inbound_assign(ctx);
	return SK_PASS;
}
