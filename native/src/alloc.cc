// mallocStats() / mallocTrim(): glibc's allocator figures, which no Node API reports (process.memoryUsage() covers
// V8's heap and what V8 is told about; TLS, HTTP/2 and libuv memory is plain malloc).
//
//   mallocStats(countArenas = true) -> { inUse, free, mmapped, arenaBytes, topReleasable, arenas } (bytes,
//                    arenas a count, -1 when not counted), or null where the C library is not glibc >= 2.33 (no
//                    mallinfo2). Both walk the arenas' free lists: ~0.05 ms after a flood (few, coalesced free
//                    chunks), ~20 ms with 100,000 scattered ones; malloc_info (the arena count) adds ~1 ms there
//       inUse         uordblks + hblkhd: bytes handed out by malloc and not yet freed (live native objects,
//                     plus Buffers' backing stores, which Node allocates with malloc too)
//       free          fordblks: freed bytes the allocator keeps in its arenas (part of it may already be given
//                     back page-wise by malloc_trim; mallinfo2 cannot tell which)
//       mmapped       hblkhd: of inUse, big chunks in their own mappings (returned on free)
//       arenaBytes    arena: bytes the arenas obtained from the system (sbrk heap + per-thread heaps)
//       topReleasable keepcost: free bytes at the top of the main heap that a trim returns at once
//       arenas        malloc arenas (main + per-thread), counted from malloc_info's <heap nr=...> entries
//   mallocTrim() -> true when malloc_trim(0) gave memory back to the system (whole free pages of all arenas)
//   pageSize         sysconf(_SC_PAGESIZE), to read /proc/self/statm (pages) in bytes

#include "alloc.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define QUICGATE_HAVE_MALLINFO2 1
#endif

namespace quicgate {
namespace {

#ifdef QUICGATE_HAVE_MALLINFO2
// malloc_info writes one <heap nr="N"> element per arena; -1 when the XML could not be produced.
double CountArenas() {
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  if (out == nullptr) return -1;
  int rc = malloc_info(0, out);
  std::fclose(out);
  double count = 0;
  if (rc == 0 && text != nullptr) {
    for (const char* p = text; (p = std::strstr(p, "<heap nr=")) != nullptr; p += 9) count++;
  } else {
    count = -1;
  }
  std::free(text);
  return count;
}
#endif

Napi::Value MallocStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef QUICGATE_HAVE_MALLINFO2
  bool countArenas = info.Length() < 1 || !info[0].IsBoolean() || info[0].As<Napi::Boolean>().Value();
  struct mallinfo2 mi = mallinfo2();
  Napi::Object stats = Napi::Object::New(env);
  stats.Set("inUse", Napi::Number::New(env, static_cast<double>(mi.uordblks + mi.hblkhd)));
  stats.Set("free", Napi::Number::New(env, static_cast<double>(mi.fordblks)));
  stats.Set("mmapped", Napi::Number::New(env, static_cast<double>(mi.hblkhd)));
  stats.Set("arenaBytes", Napi::Number::New(env, static_cast<double>(mi.arena)));
  stats.Set("topReleasable", Napi::Number::New(env, static_cast<double>(mi.keepcost)));
  stats.Set("arenas", Napi::Number::New(env, countArenas ? CountArenas() : -1));
  return stats;
#else
  return env.Null();
#endif
}

Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef QUICGATE_HAVE_MALLINFO2
  return Napi::Boolean::New(env, malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace

void RegisterMalloc(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocStats", Napi::Function::New(env, MallocStats, "mallocStats"));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
}

}  // namespace quicgate
