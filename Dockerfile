# syntax=docker/dockerfile:1
# SPDX-License-Identifier: Apache-2.0
# The kernmesh image: the agent, the controller and the CLI, as `kernmesh` on
# PATH. deploy/ runs it; each workload sets its own command.
#
# Not built on the development machine (it has no Docker engine): checked by
# reading, and by laying the runtime stage's files out by hand and running
# `kernmesh version` and loading the addon from there.
#
#   docker build -t ghcr.io/kernmesh/kernmesh:0.1.0 .

# --- build: BPF object, skeleton and addon (cmake-js), then the TypeScript ---
FROM node:24-bookworm AS build
# clang/llvm: the BPF C; bpftool: vmlinux.h and the skeleton; libbpf-dev,
# pkg-config, cmake, make, g++: the addon.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool pkg-config cmake make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change reuses this layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bpf/ bpf/
COPY native/ native/
COPY src/ src/
# vmlinux.h (CO-RE types) is dumped from the build host's kernel BTF, which
# RUN steps see at /sys/kernel/btf/vmlinux; any BTF-enabled kernel will do,
# since libbpf relocates the programs to the node's kernel at load. On a build
# host without BTF, copy a vmlinux.h in and run instead:
#   npm run build:native -- --CDKM_VMLINUX_H=/src/vmlinux.h && npm run build:ts
RUN npm run build \
 && npm prune --omit=dev

# --- runtime ----------------------------------------------------------------
FROM node:24-bookworm-slim
# libbpf1: the addon links it; iptables: the iptables mode's REDIRECT rules;
# iproute2: network namespaces by name (ip netns).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 iptables iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/kernmesh
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
# src/datapath/native.ts loads ../../build/native/Release/kernmesh.node
# relative to itself: from dist/datapath/native.js that is this path.
COPY --from=build /src/build/native/Release/kernmesh.node build/native/Release/kernmesh.node
# Node resolves the symlink, so the addon path above holds for `kernmesh`
# started from anywhere.
RUN ln -s /opt/kernmesh/dist/cli/main.js /usr/local/bin/kernmesh \
 && kernmesh version
# Non-root by default (the controller); the agent's pod asks for uid 0 and
# names its capabilities (deploy/agent/daemonset.yaml).
USER 65532:65532
CMD ["kernmesh", "--help"]
