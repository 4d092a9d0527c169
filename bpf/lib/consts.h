/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* UAPI constants that vmlinux.h (types only) does not carry. */
#ifndef KM_LIB_CONSTS_H
#define KM_LIB_CONSTS_H

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_SOCKET 1
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_MARK 36
/* linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h */
#define SO_ORIGINAL_DST 80
#define IP6T_SO_ORIGINAL_DST 80
#define EPERM 1
#define PAGE_SIZE 4096

/* Verdicts of cgroup sock_addr and sockopt programs. */
#define KM_ALLOW 1
#define KM_DENY 0

#endif
