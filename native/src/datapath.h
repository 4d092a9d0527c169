// SPDX-License-Identifier: Apache-2.0
// The loaded BPF object: maps, programs, cgroup links. Mechanism only: which
// cgroup, which pins and which entries is decided in src/datapath/.
#pragma once

#include <napi.h>

struct kernmesh;
struct bpf_map;
struct bpf_program;

namespace km {

class Datapath : public Napi::ObjectWrap<Datapath> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit Datapath(const Napi::CallbackInfo& info);
  ~Datapath() override;

  // Called by the load worker once the skeleton is loaded.
  static Napi::Value Wrap(Napi::Env env, struct kernmesh* skel);

 private:
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value AttachNetns(const Napi::CallbackInfo& info);
  Napi::Value AttachSkMsg(const Napi::CallbackInfo& info);
  Napi::Value DetachSkMsg(const Napi::CallbackInfo& info);
  Napi::Value MapInfo(const Napi::CallbackInfo& info);
  Napi::Value MapUpdate(const Napi::CallbackInfo& info);
  Napi::Value MapLookup(const Napi::CallbackInfo& info);
  Napi::Value MapDelete(const Napi::CallbackInfo& info);
  Napi::Value MapDump(const Napi::CallbackInfo& info);
  Napi::Value ReadStats(const Napi::CallbackInfo& info);
  Napi::Value ProgramIds(const Napi::CallbackInfo& info);
  Napi::Value UnpinMaps(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  struct bpf_map* MapArg(const Napi::CallbackInfo& info, size_t i);
  struct bpf_program* ProgArg(const Napi::CallbackInfo& info, size_t i);
  void EnsureOpen(Napi::Env env);

  struct kernmesh* skel_ = nullptr;
};

// load(options) -> Promise<Datapath>
Napi::Value Load(const Napi::CallbackInfo& info);
// programExists(id) -> boolean
Napi::Value ProgramExists(const Napi::CallbackInfo& info);
// detachLink(pinPath) -> boolean
Napi::Value DetachLink(const Napi::CallbackInfo& info);

}  // namespace km
