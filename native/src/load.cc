// SPDX-License-Identifier: Apache-2.0
// Opening and loading the skeleton off the main thread (it runs the
// verifier), with libbpf's log captured for the error a person reads.
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include <string>

#include "datapath.h"
#include "errors.h"
#include "kernmesh.h"
#include "kernmesh.skel.h"

namespace km {
namespace {

// libbpf's print hook is process-wide; each load captures on its own thread.
thread_local std::string* tl_log = nullptr;

int CaptureLibbpfLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!tl_log || level == LIBBPF_DEBUG) return 0;
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, args);
  tl_log->append(line);
  return 0;
}

struct LoadOptions {
  std::string pin_dir;
  uint32_t max_workloads = KM_DEFAULT_MAX_WORKLOADS;
  uint32_t max_exclusions = KM_DEFAULT_MAX_EXCLUSIONS;
  uint32_t max_connections = KM_DEFAULT_MAX_CONNECTIONS;
  bool splice = true;
};

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, LoadOptions opts)
      : Napi::AsyncWorker(env), opts_(std::move(opts)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    tl_log = &log_;
    DoLoad();
    tl_log = nullptr;
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      Napi::Error e = SystemError(env, err_, op_, detail_);
      e.Value().Set("verifierLog", log_);
      deferred_.Reject(e.Value());
      return;
    }
    deferred_.Resolve(Datapath::Wrap(env, skel_));
    skel_ = nullptr;
  }

  ~LoadWorker() override {
    if (skel_) kernmesh__destroy(skel_);
  }

 private:
  void Fail(int err, const char* op, std::string detail) {
    err_ = err;
    op_ = op;
    detail_ = std::move(detail);
  }

  void DoLoad() {
    LIBBPF_OPTS(bpf_object_open_opts, open_opts);
    open_opts.pin_root_path = opts_.pin_dir.c_str();
    skel_ = kernmesh__open_opts(&open_opts);
    if (!skel_) return Fail(errno, "bpf_object_open", "the embedded BPF object did not open");

    struct { struct bpf_map* map; uint32_t n; } sizes[] = {
        {skel_->maps.km_capture_v1, opts_.max_workloads},
        {skel_->maps.km_xport_v1, opts_.max_exclusions},
        {skel_->maps.km_xcidr4_v1, opts_.max_exclusions},
        {skel_->maps.km_xcidr6_v1, opts_.max_exclusions},
        {skel_->maps.km_odst_ck_v1, opts_.max_connections},
        {skel_->maps.km_odst_tp_v1, opts_.max_connections},
        {skel_->maps.km_socks_v1, opts_.max_connections},
        {skel_->maps.km_expect_v1, opts_.max_connections},
        {skel_->maps.km_dials_v1, opts_.max_connections},
        // A pod's IPv4 and IPv6 address each.
        {skel_->maps.km_local_v1, 2 * opts_.max_workloads},
    };
    for (auto& s : sizes) {
      int rc = bpf_map__set_max_entries(s.map, s.n);
      if (rc) return Fail(-rc, "bpf_map__set_max_entries", bpf_map__name(s.map));
    }

    skel_->rodata->km_splice_enabled = opts_.splice;

    int rc = kernmesh__load(skel_);
    if (rc) {
      int err = -rc;
      std::string hint = HintFor(err);
      if (log_.find("couldn't reuse pinned map") != std::string::npos)
        hint = "a map pinned under " + opts_.pin_dir +
               " has another layout or capacity: run `kernmesh datapath cleanup` or load with the same capacities";
      else if (err == EINVAL || err == EACCES)
        hint = "the verifier refused a program (see error.verifierLog); " + HintFor(err);
      return Fail(err, "bpf_object_load", hint);
    }
  }

  LoadOptions opts_;
  Napi::Promise::Deferred deferred_;
  struct kernmesh* skel_ = nullptr;
  std::string log_;
  int err_ = 0;
  std::string op_;
  std::string detail_;
};

uint32_t OptU32(Napi::Object o, const char* key, uint32_t def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 1 || v.As<Napi::Number>().DoubleValue() > (1u << 24))
    throw Napi::TypeError::New(o.Env(), std::string("options.") + key + " must be an integer from 1 to 16777216");
  return v.As<Napi::Number>().Uint32Value();
}

}  // namespace

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  LoadOptions opts;
  // Required: without it libbpf would pin straight into /sys/fs/bpf.
  Napi::Value pin = o.Get("pinDir");
  if (!pin.IsString() || pin.As<Napi::String>().Utf8Value().empty())
    throw Napi::TypeError::New(env, "options.pinDir must name a directory on a bpf filesystem");
  opts.pin_dir = pin.As<Napi::String>().Utf8Value();
  opts.max_workloads = OptU32(o, "maxWorkloads", opts.max_workloads);
  opts.max_exclusions = OptU32(o, "maxExclusions", opts.max_exclusions);
  opts.max_connections = OptU32(o, "maxConnections", opts.max_connections);
  Napi::Value splice = o.Get("splice");
  if (!splice.IsUndefined()) {
    if (!splice.IsBoolean()) throw Napi::TypeError::New(env, "options.splice must be a boolean");
    opts.splice = splice.As<Napi::Boolean>().Value();
  }
  static bool print_hooked = false;
  if (!print_hooked) {
    libbpf_set_print(CaptureLibbpfLog);
    print_hooked = true;
  }
  auto* worker = new LoadWorker(env, std::move(opts));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace km
