// SPDX-License-Identifier: Apache-2.0
// The module's exports. Declared for TypeScript in src/datapath/native.ts.
#include <napi.h>

#include "datapath.h"

namespace km {
Napi::Value ListenInNetns(const Napi::CallbackInfo& info);
Napi::Value NetnsCookie(const Napi::CallbackInfo& info);
Napi::Value SocketInNetns(const Napi::CallbackInfo& info);
Napi::Value OriginalDst(const Napi::CallbackInfo& info);
Napi::Value MarkedSocket(const Napi::CallbackInfo& info);
Napi::Value LockFile(const Napi::CallbackInfo& info);
}  // namespace km

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  km::Datapath::Init(env, exports);
  exports.Set("load", Napi::Function::New(env, km::Load, "load"));
  exports.Set("detachLink", Napi::Function::New(env, km::DetachLink, "detachLink"));
  exports.Set("programExists", Napi::Function::New(env, km::ProgramExists, "programExists"));
  exports.Set("listenInNetns", Napi::Function::New(env, km::ListenInNetns, "listenInNetns"));
  exports.Set("netnsCookie", Napi::Function::New(env, km::NetnsCookie, "netnsCookie"));
  exports.Set("socketInNetns", Napi::Function::New(env, km::SocketInNetns, "socketInNetns"));
  exports.Set("originalDst", Napi::Function::New(env, km::OriginalDst, "originalDst"));
  exports.Set("markedSocket", Napi::Function::New(env, km::MarkedSocket, "markedSocket"));
  exports.Set("lockFile", Napi::Function::New(env, km::LockFile, "lockFile"));
  return exports;
}

NODE_API_MODULE(kernmesh, Init)
