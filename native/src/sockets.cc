// SPDX-License-Identifier: Apache-2.0
// Socket-level mechanism for the proxy: original destinations, marked
// sockets, and the agent's single-owner lock.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "errors.h"
#include "sockaddr.h"

// linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace km {

bool ParseSockAddr(const std::string& host, uint32_t port, SockAddr* out) {
  memset(out, 0, sizeof(*out));
  auto* sin = reinterpret_cast<sockaddr_in*>(&out->ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(*sin);
    return true;
  }
  memset(out, 0, sizeof(*out));
  if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(*sin6);
    return true;
  }
  return false;
}

Napi::Object SockAddrToJs(Napi::Env env, const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  Napi::Object o = Napi::Object::New(env);
  if (sa->sa_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    o.Set("family", "IPv4");
    o.Set("port", ntohs(sin->sin_port));
  } else {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    o.Set("family", "IPv6");
    o.Set("port", ntohs(sin6->sin6_port));
  }
  o.Set("address", buf);
  return o;
}

// originalDst(fd) -> { family, address, port }. Asks SO_ORIGINAL_DST the way
// a proxy behind iptables REDIRECT does: conntrack answers in iptables mode,
// the cgroup/getsockopt program in eBPF mode.
Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  sockaddr_storage peer;
  socklen_t plen = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0)
    throw SystemError(env, errno, "getpeername", "fd " + std::to_string(fd) + " is not a connected socket");

  // An IPv6 socket with a v4-mapped peer carries IPv4: ask at the IPv4 level.
  bool v4 = peer.ss_family == AF_INET ||
            IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr);
  sockaddr_storage dst;
  memset(&dst, 0, sizeof(dst));
  socklen_t len = v4 ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  int rc = v4 ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len)
              : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len);
  if (rc != 0) {
    int err = errno;
    throw SystemError(env, err, "getsockopt SO_ORIGINAL_DST",
                      err == ENOENT || err == ENOPROTOOPT
                          ? "this connection was not redirected (neither kernmesh eBPF nor iptables REDIRECT saw it)"
                          : HintFor(err));
  }
  return SockAddrToJs(env, reinterpret_cast<sockaddr*>(&dst));
}

// markedSocket(family 4|6, mark) -> fd of an unconnected, non-blocking TCP
// socket whose SO_MARK tells connect4/6 that it is the proxy's own.
Napi::Value MarkedSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t family = ArgU32(info, 0, "family");
  uint32_t mark = ArgU32(info, 1, "mark");
  if (family != 4 && family != 6) throw Napi::TypeError::New(env, "family must be 4 or 6");
  int s = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) throw SystemError(env, errno, "socket", "");
  if (setsockopt(s, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    int err = errno;
    close(s);
    throw SystemError(env, err, "setsockopt SO_MARK", "needs CAP_NET_ADMIN");
  }
  return Napi::Number::New(env, s);
}

// lockFile(path) -> fd holding an exclusive flock; closing the fd releases it.
// One agent per pin directory: a second one gets EWOULDBLOCK at once.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw SystemError(env, errno, "open", path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    throw SystemError(env, err, "flock", path + (err == EWOULDBLOCK ? " is held by another kernmesh agent" : ""));
  }
  return Napi::Number::New(env, fd);
}

}  // namespace km
