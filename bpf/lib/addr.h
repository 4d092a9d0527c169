/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Address predicates and socket-key builders shared by the hooks. */
#ifndef KM_LIB_ADDR_H
#define KM_LIB_ADDR_H

static __always_inline bool km_ip4_is_loopback(__u32 addr_be)
{
	/* 127.0.0.0/8: the first byte on the wire is the lowest in memory. */
	return (bpf_ntohl(addr_be) >> 24) == 127;
}

static __always_inline bool km_ip6_is_v4mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

static __always_inline bool km_ip6_is_loopback(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

/*
 * Context fields must be loaded at constant offsets from the context
 * pointer itself: the verifier refuses a pointer into the context that has
 * been moved, which is what clang makes of a plain loop over an array field.
 */
#define KM_CTX_U32(ctx, field)                                              \
	({                                                                  \
		__u32 __v;                                                  \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                       \
			     : "=r"(__v)                                    \
			     : "r"(ctx), "i"(__builtin_offsetof(typeof(*(ctx)), field))); \
		__v;                                                        \
	})

#define KM_READ6(dst, ctx, field)                          \
	do {                                               \
		(dst)[0] = KM_CTX_U32(ctx, field[0]);      \
		(dst)[1] = KM_CTX_U32(ctx, field[1]);      \
		(dst)[2] = KM_CTX_U32(ctx, field[2]);      \
		(dst)[3] = KM_CTX_U32(ctx, field[3]);      \
	} while (0)

/*
 * Fill key from one socket's own view (addresses already copied out of the
 * context). A v4-mapped IPv6 socket is keyed as
 * IPv4 so that it pairs with the IPv4 socket at the other end.
 */
static __always_inline void km_key_fill(struct km_sock_key *key, __u64 netns, __u32 family,
					 __u32 local4, const __u32 *local6, __u32 remote4,
					 const __u32 *remote6, __u16 local_port, __u16 remote_port)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->netns = netns;
	key->local_port = local_port;
	key->remote_port = remote_port;
	if (family == AF_INET6 && !(km_ip6_is_v4mapped(local6) && km_ip6_is_v4mapped(remote6))) {
		key->family = AF_INET6;
		key->local[0] = local6[0];
		key->local[1] = local6[1];
		key->local[2] = local6[2];
		key->local[3] = local6[3];
		key->remote[0] = remote6[0];
		key->remote[1] = remote6[1];
		key->remote[2] = remote6[2];
		key->remote[3] = remote6[3];
		return;
	}
	key->family = AF_INET;
	key->local[0] = family == AF_INET6 ? local6[3] : local4;
	key->remote[0] = family == AF_INET6 ? remote6[3] : remote4;
}

/* The same connection as its other end sees it. */
static __always_inline void km_key_peer(struct km_sock_key *peer, const struct km_sock_key *key)
{
	peer->netns = key->netns;
	peer->family = key->family;
	peer->local_port = key->remote_port;
	peer->remote_port = key->local_port;
	peer->local[0] = key->remote[0];
	peer->local[1] = key->remote[1];
	peer->local[2] = key->remote[2];
	peer->local[3] = key->remote[3];
	peer->remote[0] = key->local[0];
	peer->remote[1] = key->local[1];
	peer->remote[2] = key->local[2];
	peer->remote[3] = key->local[3];
}

static __always_inline bool km_key_remote_is_loopback(const struct km_sock_key *key)
{
	if (key->family == AF_INET)
		return km_ip4_is_loopback(key->remote[0]);
	return km_ip6_is_loopback(key->remote);
}

/*
 * Which namespace a sockhash key belongs to: a loopback 4-tuple exists in
 * every namespace, so loopback keys keep the netns cookie; any other address
 * is unique on a node, so those keys drop it (0), which lets the two ends of
 * a proxy<->pod pair, each in its own namespace, find each other.
 */
static __always_inline void km_key_node_scope(struct km_sock_key *key)
{
	if (!km_key_remote_is_loopback(key))
		key->netns = 0;
}

#endif
