/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Same-node splicing: the proxy's connection onward to a pod on this node
 * (node netns -> veth -> pod netns) is spliced like the application<->proxy
 * loopback pair, so neither direction walks the TCP/IP stack and the veth.
 *
 * Which sockets qualify, and where each is recognised:
 *   - the proxy's end: only connect4/6 know whose connect it is (the current
 *     cgroup is the proxy's there, never in sockops, which runs in softirq),
 *     so a connect by the proxy (cgroup or SO_MARK, as km_is_proxy says) to
 *     an address of km_local_v1 tags the socket in its sk_storage. At
 *     ACTIVE_ESTABLISHED a tagged socket is spliced, and leaves the key its
 *     peer will have in km_expect_v1.
 *   - the pod's end (the application's socket, or the proxy's own inbound
 *     listener's when sk_lookup took the connection): at PASSIVE_ESTABLISHED,
 *     a socket whose key is expected. The proxy's end is established first
 *     (it sees the SYN-ACK before the pod sees the ACK), so the entry is
 *     there in time. Only sockets of cgroups under the attach cgroup run
 *     sockops: a pod outside it is simply not spliced.
 * Keys leave the netns cookie out (km_key_node_scope): pod addresses are
 * unique on the node, and the two ends live in different namespaces.
 *
 * Order of bytes: a send that finds no peer (the pod's end not spliced yet,
 * or never) goes through the stack, and a later spliced send would be read
 * before it (the receiver drains its ingress queue first). So such a socket
 * leaves the splice for good at its first miss, the same one-way switch as
 * a bulk flow (km_on_local_miss).
 */
#ifndef KM_LIB_SAMENODE_H
#define KM_LIB_SAMENODE_H

/* At connect (see km_tag_proxy_dial): a dial to a pod on this node. The key is the destination as dialled. */
static __always_inline __u32 km_local_peer_flag(const struct km_addr_key *dst)
{
	return km_splice_enabled && bpf_map_lookup_elem(&km_local_v1, dst) ? KM_FLOW_LOCAL_PEER : 0;
}

/* The proxy's end, established: splice it and announce its peer. */
static __always_inline void km_local_on_active(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct km_sock_key key, peer;
	struct km_flow *f;
	__u8 one = 1;

	if (!km_splice_enabled || !sk)
		return;
	f = bpf_sk_storage_get(&km_flow_v1, sk, 0, 0);
	if (!f || !(f->flags & KM_FLOW_LOCAL_PEER))
		return;
	km_sockops_key(skops, &key);
	if (key.netns)
		return; /* a loopback pair after all: not ours */
	km_key_peer(&peer, &key);
	if (bpf_map_update_elem(&km_expect_v1, &peer, &one, BPF_ANY)) {
		km_count(KM_STAT_SOCKHASH_FAILED, 1);
		return;
	}
	km_splice_add(skops, &key, KM_STAT_SOCKOPS_LOCAL_ACTIVE);
}

/* The pod's end, established: spliced if the proxy's end expects it. */
static __always_inline void km_local_on_passive(struct bpf_sock_ops *skops)
{
	struct km_sock_key key;

	if (!km_splice_enabled)
		return;
	km_sockops_key(skops, &key);
	if (key.netns || !bpf_map_lookup_elem(&km_expect_v1, &key))
		return;
	bpf_map_delete_elem(&km_expect_v1, &key);
	km_splice_add(skops, &key, KM_STAT_SOCKOPS_LOCAL_PASSIVE);
}

/*
 * A same-node socket's send found no peer and went through the stack: its
 * later sends follow it there, or they would overtake it (see the top).
 */
static __always_inline void km_on_local_miss(const struct km_sock_key *key, struct km_flow *f)
{
	if (key->netns || !f || f->bulk)
		return;
	f->bulk = 1;
	km_count(KM_STAT_LOCAL_LEFT, 1);
}

#endif
