// SPDX-License-Identifier: Apache-2.0
// Work inside another network namespace from a short-lived helper thread:
// setns() changes only the calling thread, so Node's own threads never move.
// A socket keeps the namespace it was created in, whatever thread uses it.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>

#include "errors.h"
#include "sockaddr.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace km {
namespace {

struct Outcome {
  int err = 0;
  std::string op;
};

// Runs fn on a thread that has entered netnsPath; fn returns 0 or sets out.
Outcome InNetns(const std::string& netns_path, const std::function<void(Outcome&)>& fn) {
  Outcome out;
  int nsfd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    out.err = errno;
    out.op = "open netns";
    return out;
  }
  std::thread t([&] {
    if (setns(nsfd, CLONE_NEWNET) != 0) {
      out.err = errno;
      out.op = "setns";
      return;
    }
    fn(out);
  });
  t.join();
  close(nsfd);
  return out;
}

[[noreturn]] void ThrowNetns(Napi::Env env, const Outcome& o, const std::string& netns_path) {
  std::string detail = netns_path;
  if (o.err == ENOENT && o.op == "open netns") detail += " does not exist: is the pod still running?";
  else if (o.err == EINVAL && o.op == "setns") detail += " is not a network namespace";
  else if (o.err == EADDRINUSE) detail += ": the port is taken in that namespace";
  else if (!HintFor(o.err).empty()) detail += ": " + HintFor(o.err);
  throw SystemError(env, o.err, o.op, detail);
}

}  // namespace

// listenInNetns(netnsPath, host, port, backlog) -> fd of a listening TCP
// socket inside that namespace, non-blocking, for net.Server.listen({ fd }).
Napi::Value ListenInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  std::string host = ArgString(info, 1, "host");
  uint32_t port = ArgU32(info, 2, "port");
  uint32_t backlog = info.Length() > 3 ? ArgU32(info, 3, "backlog") : 511;
  if (port > 65535) throw Napi::TypeError::New(env, "port must be from 0 to 65535");
  SockAddr addr;
  if (!ParseSockAddr(host, port, &addr)) throw Napi::TypeError::New(env, "host must be an IPv4 or IPv6 address, got " + host);

  int fd = -1;
  Outcome o = InNetns(path, [&](Outcome& out) {
    int s = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
      out.err = errno;
      out.op = "socket";
      return;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr.ss.ss_family == AF_INET6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(s, reinterpret_cast<sockaddr*>(&addr.ss), addr.len) != 0) {
      out.err = errno;
      out.op = "bind " + host + ":" + std::to_string(port);
      close(s);
      return;
    }
    if (listen(s, static_cast<int>(backlog)) != 0) {
      out.err = errno;
      out.op = "listen";
      close(s);
      return;
    }
    fd = s;
  });
  if (o.err) ThrowNetns(env, o, path);
  return Napi::Number::New(env, fd);
}

// socketInNetns(netnsPath, family 4|6) -> fd of an unconnected, non-blocking
// TCP socket created inside that namespace (for net.Socket({ fd }).connect):
// the inbound proxy reaches a pod's application on the pod's own loopback.
Napi::Value SocketInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  uint32_t family = ArgU32(info, 1, "family");
  if (family != 4 && family != 6) throw Napi::TypeError::New(env, "family must be 4 or 6");
  int fd = -1;
  Outcome o = InNetns(path, [&](Outcome& out) {
    fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      out.err = errno;
      out.op = "socket";
    }
  });
  if (o.err) ThrowNetns(env, o, path);
  return Napi::Number::New(env, fd);
}

// netnsCookie(netnsPath) -> bigint: the cookie BPF programs see for it.
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "netnsPath");
  uint64_t cookie = 0;
  Outcome o = InNetns(path, [&](Outcome& out) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
      out.err = errno;
      out.op = "socket";
      return;
    }
    socklen_t len = sizeof(cookie);
    if (getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
      out.err = errno;
      out.op = "getsockopt SO_NETNS_COOKIE";
    }
    close(s);
  });
  if (o.err) ThrowNetns(env, o, path);
  return Napi::BigInt::New(env, cookie);
}

}  // namespace km
