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

/*
 * The node's own connections. kubelet's tcpSocket and httpGet probes come
 * from the node's address; were they taken, the proxy would accept them and
 * a probe would pass with the application down. So a connection from a
 * node address reaches the application directly, as it does without a
 * mesh, unless the proxy made it: the proxy's connects to inbound-captured
 * pod ports are tagged at connect4/6 (km_tag_proxy_dial) and their 4-tuple recorded at TCP_CONNECT_CB, before the SYN
 * leaves, until established.
 */
static __always_inline __u32 km_inbound_dial_flag(const struct km_addr_key *dst, __u16 port)
{
	struct km_inbound_key key = {};

	key.addr[0] = dst->addr[0];
	key.addr[1] = dst->addr[1];
	key.addr[2] = dst->addr[2];
	key.addr[3] = dst->addr[3];
	key.port = port;
	key.family = (__u16)dst->family;
	return bpf_map_lookup_elem(&km_inbound_v1, &key) ? KM_FLOW_INBOUND_DIAL : 0;
}

static __always_inline bool km_key_self(const struct km_sock_key *key)
{
	return key->local[0] == key->remote[0] && key->local[1] == key->remote[1] &&
	       key->local[2] == key->remote[2] && key->local[3] == key->remote[3];
}

/*
 * A tagged connect, with its ports now chosen: its 4-tuple as the pod will
 * see it. The proxy's connection made inside the pod to the pod itself
 * needs none (lookup never takes those, see km_inbound_key_of).
 */
static __always_inline void km_inbound_on_connect(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk; /* read once: each read is a new pointer to check */
	struct km_sock_key key, peer;
	struct km_flow *f;
	__u8 one = 1;

	if (!sk)
		return;
	f = bpf_sk_storage_get(&km_flow_v1, sk, 0, 0);
	if (!f || !(f->flags & KM_FLOW_INBOUND_DIAL))
		return;
	km_sockops_key(skops, &key);
	if (key.netns || km_key_self(&key))
		return;
	km_key_peer(&peer, &key);
	if (!bpf_map_update_elem(&km_dials_v1, &peer, &one, BPF_ANY))
		km_count(KM_STAT_INBOUND_DIAL_SAVED, 1);
}

/* Established: the pod's end exists, lookup is over for this 4-tuple. */
static __always_inline void km_inbound_on_established(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct km_sock_key key, peer;
	struct km_flow *f;

	if (!sk)
		return;
	f = bpf_sk_storage_get(&km_flow_v1, sk, 0, 0);
	if (!f || !(f->flags & KM_FLOW_INBOUND_DIAL))
		return;
	f->flags &= ~KM_FLOW_INBOUND_DIAL;
	km_sockops_key(skops, &key);
	km_key_peer(&peer, &key);
	bpf_map_delete_elem(&km_dials_v1, &peer);
}

/* From a node address, and not the proxy's: the node's own connection. */
static __always_inline bool km_from_node(struct bpf_sk_lookup *ctx)
{
	struct km_addr_key src = { .family = ctx->family };
	__u32 local6[4] = {}, remote6[4] = {};
	struct km_sock_key key;

	if (ctx->family == AF_INET6) {
		KM_READ6(local6, ctx, local_ip6);
		KM_READ6(remote6, ctx, remote_ip6);
		src.addr[0] = remote6[0];
		src.addr[1] = remote6[1];
		src.addr[2] = remote6[2];
		src.addr[3] = remote6[3];
	} else {
		src.addr[0] = ctx->remote_ip4;
	}
	if (!bpf_map_lookup_elem(&km_nodeaddr_v1, &src))
		return false;
	km_key_fill(&key, 0, ctx->family, ctx->local_ip4, local6, ctx->remote_ip4, remote6,
		    (__u16)ctx->local_port, bpf_ntohs(ctx->remote_port));
	return bpf_map_lookup_elem(&km_dials_v1, &key) == NULL;
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
	if (km_from_node(ctx)) {
		km_count(KM_STAT_INBOUND_NODE_PASSED, 1);
		return;
	}
	sk = bpf_map_lookup_elem(&km_insocks_v1, slot);
	if (!sk)
		return; /* the listener is gone: the application answers itself */
	if (!bpf_sk_assign(ctx, sk, 0))
		km_count(KM_STAT_INBOUND_ASSIGNED, 1);
	bpf_sk_release(sk);
}

#endif
