// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <napi.h>

#include <string>

namespace km {

struct SockAddr {
  sockaddr_storage ss;
  socklen_t len;
};

// "127.0.0.1" or "::1" plus a port; false when host is not an IP literal.
bool ParseSockAddr(const std::string& host, uint32_t port, SockAddr* out);

// { family: 'IPv4'|'IPv6', address, port } for JS.
Napi::Object SockAddrToJs(Napi::Env env, const sockaddr* sa);

}  // namespace km
