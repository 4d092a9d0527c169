/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Splicing: both ends of an application<->proxy loopback connection go into
 * the sockhash, and sk_msg moves each send straight into the peer's receive
 * queue. Only these pairs, and the proxy's connections to pods on this node
 * (lib/samenode.h), are spliced: a psock costs setup time, and a
 * connection whose peer is not on this host has nothing to gain from it.
 */
#ifndef KM_LIB_SPLICE_H
#define KM_LIB_SPLICE_H

static __always_inline void km_sockops_key(struct bpf_sock_ops *skops, struct km_sock_key *key)
{
	__u32 family = skops->family;
	__u32 local6[4] = {}, remote6[4] = {};

	if (family == AF_INET6) {
		KM_READ6(local6, skops, local_ip6);
		KM_READ6(remote6, skops, remote_ip6);
	}
	km_key_fill(key, bpf_get_netns_cookie(skops), family, skops->local_ip4, local6,
		    skops->remote_ip4, remote6, (__u16)skops->local_port,
		    (__u16)bpf_ntohl(skops->remote_port));
	km_key_node_scope(key);
}

static __always_inline void km_splice_add(struct bpf_sock_ops *skops, struct km_sock_key *key,
					  __u32 stat)
{
	if (!km_splice_enabled)
		return;
	if (bpf_sock_hash_update(skops, &km_socks_v1, key, BPF_ANY)) {
		km_count(KM_STAT_SOCKHASH_FAILED, 1);
		return;
	}
	km_count(stat, 1);
}

/*
 * The application's end, once connected: if connect4/6 redirected it, hand
 * its original destination over to the key the proxy's accepted socket will
 * ask with, and splice it. False: not such a socket.
 */
static __always_inline bool km_on_active_established(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct km_origdst *found = bpf_map_lookup_elem(&km_odst_ck_v1, &cookie);
	struct km_origdst dst;
	struct km_sock_key key, peer;

	if (!found)
		return false;
	dst = *found;
	bpf_map_delete_elem(&km_odst_ck_v1, &cookie);

	km_sockops_key(skops, &key);
	km_key_peer(&peer, &key);
	if (bpf_map_update_elem(&km_odst_tp_v1, &peer, &dst, BPF_ANY))
		km_count(KM_STAT_ORIGDST_SAVE_FAILED, 1);
	km_splice_add(skops, &key, KM_STAT_SOCKOPS_ACTIVE);
	return true;
}

/*
 * The proxy's end: accepted on the outbound listener from a loopback peer.
 * False: not such a socket.
 */
static __always_inline bool km_on_passive_established(struct bpf_sock_ops *skops)
{
	__u32 zero = 0;
	struct km_settings *s = bpf_map_lookup_elem(&km_settings_v1, &zero);
	struct km_sock_key key;

	if (!km_splice_enabled || !s || !s->outbound_port || skops->local_port != s->outbound_port)
		return false;
	km_sockops_key(skops, &key);
	if (!km_key_remote_is_loopback(&key))
		return false;
	km_splice_add(skops, &key, KM_STAT_SOCKOPS_PASSIVE);
	return true;
}

/*
 * Splicing has no backpressure: the peer's ingress queue is bounded only by
 * the kernel's global TCP memory, and when that runs short the send fails
 * with ENOMEM instead of waiting (bpf_tcp_ingress). A socket that moves more
 * than KM_BULK_BYTES within KM_BULK_WINDOW_NS is a bulk flow, and goes back
 * to the normal stack for good, where TCP's flow control paces it. The
 * switch is one-way, which keeps the bytes in order: the peer reads what is
 * in its ingress queue before its TCP receive queue. Request/response
 * traffic stays far below the threshold and stays spliced.
 */
#define KM_BULK_WINDOW_NS (100ULL * 1000 * 1000)
#define KM_BULK_BYTES (4U << 20)

/* The sending socket's flow state (made on its first send); NULL if none could be made. */
static __always_inline struct km_flow *km_flow_of(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;

	if (!sk)
		return NULL;
	return bpf_sk_storage_get(&km_flow_v1, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
}

static __always_inline bool km_bulk_flow(struct km_flow *f, __u32 size)
{
	__u64 now;

	if (!f)
		return false;
	if (f->bulk)
		return true;
	now = bpf_ktime_get_ns();
	if (now - f->window_start_ns > KM_BULK_WINDOW_NS) {
		f->window_start_ns = now;
		f->window_bytes = 0;
	}
	f->window_bytes += size;
	if (f->window_bytes > KM_BULK_BYTES) {
		f->bulk = 1;
		return true;
	}
	return false;
}

#endif
