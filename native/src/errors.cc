// SPDX-License-Identifier: Apache-2.0
#include "errors.h"

#include <string.h>

namespace km {

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

std::string HintFor(int err) {
  switch (err) {
    case EPERM:
    case EACCES:
      return "need CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN: run the agent as root or grant them";
    case ENOMEM:
      return "locked-memory limit too low or the map is too large: raise RLIMIT_MEMLOCK or lower the map capacities";
    case E2BIG:
      return "the map is full: raise its capacity in the datapath settings";
    case ENOENT:
      return "it does not exist";
    case EBUSY:
    case EWOULDBLOCK:
      return "another kernmesh agent holds it: stop that agent first";
    case EINVAL:
      return "the kernel refused the arguments: is it 5.15 or newer with cgroup v2, BTF and sockmap?";
    default:
      return "";
  }
}

Napi::Error SystemError(Napi::Env env, int err, const std::string& op, const std::string& detail) {
  std::string message = op + ": " + strerror(err);
  if (!detail.empty()) message += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", ErrnoName(err));
  e.Value().Set("errno", -err);
  e.Value().Set("syscall", op);
  return e;
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != static_cast<double>(static_cast<uint32_t>(v)))
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an integer from 0 to 2^32-1");
  return static_cast<uint32_t>(v);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  uint32_t v = ArgU32(info, i, name);
  if (v > 0x7fffffff) throw Napi::TypeError::New(info.Env(), std::string(name) + " is not a file descriptor");
  return static_cast<int>(v);
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBuffer())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

}  // namespace km
