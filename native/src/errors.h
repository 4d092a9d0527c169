// SPDX-License-Identifier: Apache-2.0
// Errors shaped like Node's own system errors: message, code ('EPERM'),
// errno (negative, as in Node), syscall (the operation), and a hint saying
// what to do. Argument errors are TypeErrors, thrown before any work.
#pragma once

#include <napi.h>

#include <string>

namespace km {

// The symbolic name of an errno value ("EPERM"), or "E<number>".
std::string ErrnoName(int err);

// A hint for the errno values a person can do something about.
std::string HintFor(int err);

Napi::Error SystemError(Napi::Env env, int err, const std::string& op, const std::string& detail);

// Throws a TypeError unless info[i] is of the wanted kind; returns it.
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name);
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);

}  // namespace km
