/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Inbound interception: a connection arriving at a captured pod, for an
 * address and port the agent listed, is handed to the pod's inbound
 * listener (the proxy's, opened inside the pod's netns) at socket lookup,
 * without any address rewrite: the accepted socket's local address is the
 * original destination. Loopback is never taken, and a miss or a closed
 * listener leaves the connection to the application: fail-open by
 * construction.
 */
#ifndef KM_LIB_INBOUND_H
#define KM_LIB_INBOUND_H

/*
 * A connection from the pod's own address to itself is not taken either:
 * that is how the proxy reaches the application (at the address the client
 * asked for, so an application bound only to its pod IP answers too), and
 * an application calling itself needs no proxy.
 */
static __always_inline bool km_inbound_key_of(struct bpf_sk_lookup *ctx, struct km_inbound_key *key)
{
	key->port = (__u16)ctx->local_port;
	key->family = (__u16)ctx->family;
	if (ctx->family == AF_INET) {
		key->addr[0] = ctx->local_ip4;
		return !km_ip4_is_loopback(ctx->local_ip4) && ctx->remote_ip4 != ctx->local_ip4;
	}
	if (ctx->family == AF_INET6) {
		key->addr[0] = ctx->local_ip6[0];
		key->addr[1] = ctx->local_ip6[1];
		key->addr[2] = ctx->local_ip6[2];
		key->addr[3] = ctx->local_ip6[3];
		if (ctx->remote_ip6[0] == key->addr[0] && ctx->remote_ip6[1] == key->addr[1] &&
		    ctx->remote_ip6[2] == key->addr[2] && ctx->remote_ip6[3] == key->addr[3])
			return false;
		return !km_ip6_is_loopback(key->addr);
	}
	return false;
}

static __always_inline void km_inbound_assign(struct bpf_sk_lookup *ctx)
{
	struct km_inbound_key key = {};
	struct bpf_sock *sk;
	__u32 *slot;

	if (ctx->protocol != IPPROTO_TCP || !km_inbound_key_of(ctx, &key))
		return;
	slot = bpf_map_lookup_elem(&km_inbound_v1, &key);
	if (!slot)
		return;
	sk = bpf_map_lookup_elem(&km_insocks_v1, slot);
	if (!sk)
		return; /* the listener is gone: the application answers itself */
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
}

#endif
