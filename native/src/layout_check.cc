// SPDX-License-Identifier: Apache-2.0
// The map layouts the BPF C, this addon and src/datapath/codec.ts agree on.
// Must stay in sync with bpf/kernmesh.h and src/datapath/codec.ts: a size
// change here is a layout change there (and a new _vN map name).
#include "kernmesh.h"

static_assert(sizeof(struct km_settings) == 40, "km_settings layout changed");
static_assert(sizeof(struct km_capture_key) == 16, "km_capture_key layout changed");
static_assert(sizeof(struct km_workload) == 8, "km_workload layout changed");
static_assert(sizeof(struct km_port_key) == 8, "km_port_key layout changed");
static_assert(sizeof(struct km_cidr4_key) == 12, "km_cidr4_key layout changed");
static_assert(sizeof(struct km_cidr6_key) == 24, "km_cidr6_key layout changed");
static_assert(sizeof(struct km_origdst) == 24, "km_origdst layout changed");
static_assert(sizeof(struct km_sock_key) == 48, "km_sock_key layout changed");
static_assert(sizeof(struct km_inbound_key) == 20, "km_inbound_key layout changed");
static_assert(sizeof(struct km_addr_key) == 20, "km_addr_key layout changed");
static_assert(KM_MAX_NODE_ADDRESSES == 1024, "node address capacity changed: update MAX_NODE_ADDRESSES in codec.ts");
static_assert(KM_STAT__MAX == 26, "counter list changed: update STAT_NAMES in codec.ts");
