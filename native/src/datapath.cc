// SPDX-License-Identifier: Apache-2.0
#include "datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"
#include "kernmesh.h"
#include "kernmesh.skel.h"

namespace km {

namespace {

// Closes a file descriptor on every path out of a scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

struct LinkDeleter {
  void operator()(struct bpf_link* l) const { bpf_link__destroy(l); }
};
using LinkPtr = std::unique_ptr<struct bpf_link, LinkDeleter>;

// Full map dumps walk every key: off the main thread, copying as they go.
class DumpWorker : public Napi::AsyncWorker {
 public:
  DumpWorker(Napi::Env env, int map_fd, size_t key_size, size_t value_size, std::string name)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        fd_(dup(map_fd)),
        key_size_(key_size),
        value_size_(value_size),
        name_(std::move(name)) {}
  ~DumpWorker() override {
    if (fd_ >= 0) close(fd_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::vector<uint8_t> key(key_size_), next(key_size_), value(value_size_);
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd_, prev, next.data()) == 0) {
      // A key deleted between next_key and lookup is simply skipped.
      if (bpf_map_lookup_elem(fd_, next.data(), value.data()) == 0) entries_.emplace_back(next, value);
      key = next;
      prev = key.data();
    }
    if (errno != ENOENT) err_ = errno;
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(SystemError(env, err_, "bpf_map_get_next_key", name_).Value());
      return;
    }
    Napi::Array out = Napi::Array::New(env, entries_.size());
    for (size_t i = 0; i < entries_.size(); i++) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::Buffer<uint8_t>::Copy(env, entries_[i].first.data(), key_size_));
      pair.Set(1u, Napi::Buffer<uint8_t>::Copy(env, entries_[i].second.data(), value_size_));
      out.Set(i, pair);
    }
    deferred_.Resolve(out);
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  size_t key_size_, value_size_;
  std::string name_;
  int err_ = 0;
  std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> entries_;
};

// Per-CPU values are one slot per possible CPU, each rounded up to 8 bytes.
size_t UserValueSize(const struct bpf_map* map) {
  size_t v = bpf_map__value_size(map);
  switch (bpf_map__type(map)) {
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
      return ((v + 7) & ~size_t(7)) * libbpf_num_possible_cpus();
    default:
      return v;
  }
}

// A link pinned at pin (by an earlier agent): when it is of this type and
// attached to the object with this inode (cgroup id, netns inode), it is
// switched to prog in place and true is returned. A pin for something else
// is an error, or (replaceStale) detached and removed; false: attach anew.
bool ReusePinned(Napi::Env env, struct bpf_program* prog, const std::string& pin, enum bpf_link_type type, uint64_t ino,
                 bool replaceStale) {
  if (access(pin.c_str(), F_OK) != 0) return false;
  LinkPtr link(bpf_link__open(pin.c_str()));
  if (!link) throw SystemError(env, errno, "bpf_link__open", pin);
  struct bpf_link_info li;
  memset(&li, 0, sizeof(li));
  uint32_t len = sizeof(li);
  if (bpf_obj_get_info_by_fd(bpf_link__fd(link.get()), &li, &len) != 0)
    throw SystemError(env, errno, "bpf_obj_get_info_by_fd", pin);
  uint64_t attached = type == BPF_LINK_TYPE_CGROUP ? li.cgroup.cgroup_id : li.netns.netns_ino;
  if (li.type == type && attached == ino) {
    if (bpf_link__update_program(link.get(), prog) != 0) throw SystemError(env, errno, "bpf_link__update_program", pin);
    return true;
  }
  if (!replaceStale)
    throw SystemError(env, EEXIST, "attach " + std::string(bpf_program__name(prog)),
                      "the link pinned at " + pin + " is attached elsewhere (id " + std::to_string(attached) + "): detach it first");
  bpf_link__detach(link.get());
  if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SystemError(env, errno, "unlink", pin);
  return false;
}

// A link just attached (null: the attach failed, errno says why) is pinned at
// pin. Unpinned, a link dies with this process: a failure says so rather than
// leave a half-attached datapath.
void PinNew(Napi::Env env, LinkPtr link, struct bpf_program* prog, const std::string& where, const std::string& pin) {
  if (!link) throw SystemError(env, errno, "attach " + std::string(bpf_program__name(prog)), where + ": " + HintFor(errno));
  int rc = bpf_link__pin(link.get(), pin.c_str());
  if (rc) throw SystemError(env, -rc, "bpf_link__pin", pin + ": is the directory on a bpf filesystem?");
}

}  // namespace

Napi::Object Datapath::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function fn = DefineClass(env, "Datapath",
                                  {
                                      InstanceMethod("attachCgroup", &Datapath::AttachCgroup),
                                      InstanceMethod("attachNetns", &Datapath::AttachNetns),
                                      InstanceMethod("attachSkMsg", &Datapath::AttachSkMsg),
                                      InstanceMethod("detachSkMsg", &Datapath::DetachSkMsg),
                                      InstanceMethod("mapInfo", &Datapath::MapInfo),
                                      InstanceMethod("mapUpdate", &Datapath::MapUpdate),
                                      InstanceMethod("mapLookup", &Datapath::MapLookup),
                                      InstanceMethod("mapDelete", &Datapath::MapDelete),
                                      InstanceMethod("mapDump", &Datapath::MapDump),
                                      InstanceMethod("readStats", &Datapath::ReadStats),
                                      InstanceMethod("programIds", &Datapath::ProgramIds),
                                      InstanceMethod("unpinMaps", &Datapath::UnpinMaps),
                                      InstanceMethod("close", &Datapath::Close),
                                  });
  // Per environment (worker threads each load the addon), freed with it.
  env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(fn)));
  exports.Set("Datapath", fn);
  return exports;
}

Datapath::Datapath(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Datapath>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "Datapath is created by load(), not with new");
  skel_ = info[0].As<Napi::External<struct kernmesh>>().Data();
}

Datapath::~Datapath() {
  if (skel_) kernmesh__destroy(skel_);
}

Napi::Value Datapath::Wrap(Napi::Env env, struct kernmesh* skel) {
  return env.GetInstanceData<Napi::FunctionReference>()->New({Napi::External<struct kernmesh>::New(env, skel)});
}

void Datapath::EnsureOpen(Napi::Env env) {
  if (!skel_) throw Napi::Error::New(env, "the datapath was closed");
}

struct bpf_map* Datapath::MapArg(const Napi::CallbackInfo& info, size_t i) {
  EnsureOpen(info.Env());
  std::string name = ArgString(info, i, "map");
  struct bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name.c_str());
  if (!map) throw Napi::TypeError::New(info.Env(), "no map named " + name);
  return map;
}

struct bpf_program* Datapath::ProgArg(const Napi::CallbackInfo& info, size_t i) {
  EnsureOpen(info.Env());
  std::string name = ArgString(info, i, "program");
  struct bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, name.c_str());
  if (!prog) throw Napi::TypeError::New(info.Env(), "no program named " + name);
  return prog;
}

// attachCgroup(program, cgroupPath, pinPath) -> { reused }
// A link already pinned at pinPath (a restarted agent) is switched to this
// program in place: the attachment never lapses and is never doubled.
Napi::Value Datapath::AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* prog = ProgArg(info, 0);
  std::string cgroup = ArgString(info, 1, "cgroupPath");
  std::string pin = ArgString(info, 2, "pinPath");

  Fd cg(open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (cg.fd < 0) {
    int err = errno;
    throw SystemError(env, err, "open cgroup",
                      err == ENOENT ? cgroup + " does not exist: create the cgroup or fix the path"
                                    : cgroup + ": " + HintFor(err));
  }
  struct stat st;
  if (fstat(cg.fd, &st) != 0) throw SystemError(env, errno, "fstat cgroup", cgroup);

  Napi::Object result = Napi::Object::New(env);
  if (ReusePinned(env, prog, pin, BPF_LINK_TYPE_CGROUP, st.st_ino, false)) {
    result.Set("reused", true);
    return result;
  }

  PinNew(env, LinkPtr(bpf_program__attach_cgroup(prog, cg.fd)), prog, cgroup, pin);
  result.Set("reused", false);
  return result;
}

// attachNetns(program, netnsPath, pinPath) -> { reused }: an sk_lookup program
// on a network namespace, through a pinned link; a link already pinned there
// for the same namespace is switched to this program in place.
Napi::Value Datapath::AttachNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* prog = ProgArg(info, 0);
  std::string netns = ArgString(info, 1, "netnsPath");
  std::string pin = ArgString(info, 2, "pinPath");
  Fd ns(open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (ns.fd < 0) {
    int err = errno;
    throw SystemError(env, err, "open netns", err == ENOENT ? netns + " does not exist: is the pod still running?" : netns + ": " + HintFor(err));
  }
  struct stat st;
  if (fstat(ns.fd, &st) != 0) throw SystemError(env, errno, "fstat netns", netns);

  Napi::Object result = Napi::Object::New(env);
  // A link whose namespace is gone (or another one) is replaced, not reused.
  if (ReusePinned(env, prog, pin, BPF_LINK_TYPE_NETNS, st.st_ino, true)) {
    result.Set("reused", true);
    return result;
  }
  PinNew(env, LinkPtr(bpf_program__attach_netns(prog, ns.fd)), prog, netns, pin);
  result.Set("reused", false);
  return result;
}

// detachLink(pinPath) -> boolean: detaches the pinned link and removes the pin.
// Needs no loaded object, so an uninstall can run it on whatever is pinned.
Napi::Value DetachLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string pin = ArgString(info, 0, "pinPath");
  LinkPtr link(bpf_link__open(pin.c_str()));
  if (!link) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    throw SystemError(env, errno, "bpf_link__open", pin);
  }
  if (bpf_link__detach(link.get()) != 0 && errno != ENOLINK) throw SystemError(env, errno, "bpf_link__detach", pin);
  if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SystemError(env, errno, "unlink", pin);
  return Napi::Boolean::New(env, true);
}

// The sk_msg verdict lives on the (pinned) sockhash: it outlives this process.
Napi::Value Datapath::AttachSkMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (bpf_prog_attach(bpf_program__fd(skel_->progs.km_sk_msg), bpf_map__fd(skel_->maps.km_socks_v1),
                      BPF_SK_MSG_VERDICT, 0) != 0)
    throw SystemError(env, errno, "bpf_prog_attach sk_msg", HintFor(errno));
  return env.Undefined();
}

Napi::Value Datapath::DetachSkMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (bpf_prog_detach2(bpf_program__fd(skel_->progs.km_sk_msg), bpf_map__fd(skel_->maps.km_socks_v1),
                       BPF_SK_MSG_VERDICT) != 0 &&
      errno != ENOENT)
    throw SystemError(env, errno, "bpf_prog_detach sk_msg", "");
  return env.Undefined();
}

Napi::Value Datapath::MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapArg(info, 0);
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", bpf_map__name(map));
  o.Set("type", static_cast<uint32_t>(bpf_map__type(map)));
  o.Set("keySize", bpf_map__key_size(map));
  o.Set("valueSize", static_cast<double>(UserValueSize(map)));
  o.Set("maxEntries", bpf_map__max_entries(map));
  const char* pin = bpf_map__pin_path(map);
  o.Set("pinPath", pin ? Napi::Value(Napi::String::New(env, pin)) : env.Null());
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(bpf_map__fd(map), &mi, &len) == 0) o.Set("id", mi.id);
  return o;
}

namespace {
void CheckSize(const Napi::CallbackInfo& info, const Napi::Buffer<uint8_t>& b, size_t want, const char* what,
               const char* map) {
  if (b.Length() != want)
    throw Napi::TypeError::New(info.Env(), std::string(what) + " for " + map + " must be " + std::to_string(want) +
                                               " bytes, got " + std::to_string(b.Length()));
}
}  // namespace

// mapUpdate(map, key, value, flags): flags as BPF_ANY/BPF_NOEXIST/BPF_EXIST.
Napi::Value Datapath::MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapArg(info, 0);
  auto key = ArgBuffer(info, 1, "key");
  auto value = ArgBuffer(info, 2, "value");
  uint32_t flags = info.Length() > 3 ? ArgU32(info, 3, "flags") : uint32_t(BPF_ANY);
  CheckSize(info, key, bpf_map__key_size(map), "key", bpf_map__name(map));
  CheckSize(info, value, UserValueSize(map), "value", bpf_map__name(map));
  if (bpf_map_update_elem(bpf_map__fd(map), key.Data(), value.Data(), flags) != 0) {
    int err = errno;
    std::string detail = std::string(bpf_map__name(map));
    if (err == E2BIG || err == ENOSPC)
      detail += " is full (" + std::to_string(bpf_map__max_entries(map)) + " entries): raise its capacity";
    throw SystemError(env, err, "bpf_map_update_elem", detail);
  }
  return env.Undefined();
}

Napi::Value Datapath::MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapArg(info, 0);
  auto key = ArgBuffer(info, 1, "key");
  CheckSize(info, key, bpf_map__key_size(map), "key", bpf_map__name(map));
  std::vector<uint8_t> value(UserValueSize(map));
  if (bpf_map_lookup_elem(bpf_map__fd(map), key.Data(), value.data()) != 0) {
    if (errno == ENOENT) return env.Null();
    throw SystemError(env, errno, "bpf_map_lookup_elem", bpf_map__name(map));
  }
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

Napi::Value Datapath::MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapArg(info, 0);
  auto key = ArgBuffer(info, 1, "key");
  CheckSize(info, key, bpf_map__key_size(map), "key", bpf_map__name(map));
  if (bpf_map_delete_elem(bpf_map__fd(map), key.Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    throw SystemError(env, errno, "bpf_map_delete_elem", bpf_map__name(map));
  }
  return Napi::Boolean::New(env, true);
}

// programExists(id) -> boolean: is a program with this id still loaded?
Napi::Value ProgramExists(const Napi::CallbackInfo& info) {
  uint32_t id = ArgU32(info, 0, "id");
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd >= 0) {
    close(fd);
    return Napi::Boolean::New(info.Env(), true);
  }
  if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
  throw SystemError(info.Env(), errno, "bpf_prog_get_fd_by_id", HintFor(errno));
}

Napi::Value Datapath::MapDump(const Napi::CallbackInfo& info) {
  struct bpf_map* map = MapArg(info, 0);
  auto* worker = new DumpWorker(info.Env(), bpf_map__fd(map), bpf_map__key_size(map), UserValueSize(map),
                                bpf_map__name(map));
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// readStats() -> bigint[]: each counter summed over every CPU.
Napi::Value Datapath::ReadStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) throw SystemError(env, -ncpu, "libbpf_num_possible_cpus", "");
  std::vector<uint64_t> slots(ncpu);
  Napi::Array out = Napi::Array::New(env, KM_STAT__MAX);
  int fd = bpf_map__fd(skel_->maps.km_stats_v3);
  for (uint32_t i = 0; i < KM_STAT__MAX; i++) {
    if (bpf_map_lookup_elem(fd, &i, slots.data()) != 0) throw SystemError(env, errno, "bpf_map_lookup_elem", "km_stats_v3");
    uint64_t sum = 0;
    for (uint64_t v : slots) sum += v;
    out.Set(i, Napi::BigInt::New(env, sum));
  }
  return out;
}

// programIds() -> { name: id }: what bpftool will show as ours.
Napi::Value Datapath::ProgramIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  Napi::Object o = Napi::Object::New(env);
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    struct bpf_prog_info pi;
    memset(&pi, 0, sizeof(pi));
    uint32_t len = sizeof(pi);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &pi, &len) == 0) o.Set(bpf_program__name(prog), pi.id);
  }
  return o;
}

Napi::Value Datapath::UnpinMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  struct bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) {
    if (!bpf_map__is_pinned(map)) continue;
    int rc = bpf_map__unpin(map, nullptr);
    if (rc && rc != -ENOENT) throw SystemError(env, -rc, "bpf_map__unpin", bpf_map__name(map));
  }
  return env.Undefined();
}

Napi::Value Datapath::Close(const Napi::CallbackInfo& info) {
  if (skel_) {
    kernmesh__destroy(skel_);
    skel_ = nullptr;
  }
  return info.Env().Undefined();
}

}  // namespace km
