/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef KM_LIB_STATS_H
#define KM_LIB_STATS_H

/* Per-CPU slots: no atomics on the hot path; the reader sums the CPUs. */
static __always_inline void km_count(__u32 stat, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&km_stats_v3, &stat);

	if (slot)
		*slot += n;
}

#endif
