// The glibc allocator's own figures for the process (mallinfo2, malloc_info) and malloc_trim, so an operator can
// tell live native objects from memory the allocator keeps after free() (see alloc.cc and docs/robustness.md).
#pragma once

#include <napi.h>

namespace quicgate {

// Adds mallocStats(), mallocTrim() and pageSize to the addon's exports.
void RegisterMalloc(Napi::Env env, Napi::Object exports);

}  // namespace quicgate
