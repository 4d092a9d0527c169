/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * SO_ORIGINAL_DST without conntrack: the proxy asks on its accepted socket,
 * as it would behind iptables REDIRECT, and gets the address connect4/6 saw.
 */
#ifndef KM_LIB_ORIGDST_H
#define KM_LIB_ORIGDST_H

static __always_inline struct km_origdst *km_origdst_of(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 local6[4] = {}, remote6[4] = {};
	struct km_sock_key key;
	__u32 family;

	if (!sk)
		return NULL;
	family = sk->family;
	if (family == AF_INET6) {
		KM_READ6(local6, sk, src_ip6);
		KM_READ6(remote6, sk, dst_ip6);
	}
	km_key_fill(&key, bpf_get_netns_cookie(ctx), family, sk->src_ip4, local6, sk->dst_ip4,
		    remote6, (__u16)sk->src_port, bpf_ntohs(sk->dst_port));
	/* Scoped as sockops keyed it (a no-op for the loopback pairs this map holds). */
	km_key_node_scope(&key);
	return bpf_map_lookup_elem(&km_odst_tp_v1, &key);
}

static __always_inline int km_answer_ip4(struct bpf_sockopt *ctx, const struct km_origdst *dst)
{
	struct sockaddr_in *sin = ctx->optval;

	if (dst->family != AF_INET || (void *)(sin + 1) > ctx->optval_end)
		return KM_ALLOW;
	sin->sin_family = AF_INET;
	sin->sin_port = dst->port;
	sin->sin_addr.s_addr = dst->addr[0];
	__builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
	ctx->optlen = sizeof(*sin);
	ctx->retval = 0;
	km_count(KM_STAT_GETSOCKOPT_ANSWERED, 1);
	return KM_ALLOW;
}

static __always_inline int km_answer_ip6(struct bpf_sockopt *ctx, const struct km_origdst *dst)
{
	struct sockaddr_in6 *sin6 = ctx->optval;

	if (dst->family != AF_INET6 || (void *)(sin6 + 1) > ctx->optval_end)
		return KM_ALLOW;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = dst->port;
	sin6->sin6_flowinfo = 0;
	sin6->sin6_addr.in6_u.u6_addr32[0] = dst->addr[0];
	sin6->sin6_addr.in6_u.u6_addr32[1] = dst->addr[1];
	sin6->sin6_addr.in6_u.u6_addr32[2] = dst->addr[2];
	sin6->sin6_addr.in6_u.u6_addr32[3] = dst->addr[3];
	sin6->sin6_scope_id = 0;
	ctx->optlen = sizeof(*sin6);
	ctx->retval = 0;
	km_count(KM_STAT_GETSOCKOPT_ANSWERED, 1);
	return KM_ALLOW;
}

#endif
