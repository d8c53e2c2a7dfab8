// jit: compile kernel source with the system C++ compiler, load it with dlopen, cache it in memory and on
// disk. The disk cache is a private per-user directory; entries are written atomically and verified on load.
#pragma once

#include <string>

#include "kernel_abi.h"

namespace kiln::jit {

struct Loaded {
  kiln_kernel_fn fn = nullptr;
  bool from_disk = false;
  bool compiled = false;
  std::string warning;  // non-empty: tell the user once (e.g. the cache directory is unsafe)
};

// The compiler command ($CXX or c++) resolved on PATH, or "" if there is none.
std::string compiler_path();
std::string compiler_command();
std::string compile_flags();
// The directory of the disk cache, or "" when it is disabled (with the reason in *why).
std::string cache_dir(std::string* why);
// Returns a loaded kernel; throws std::runtime_error carrying the compiler output when compilation fails.
Loaded load(const std::string& name, const std::string& full_source);
// Forget the in-memory cache (tests use this to exercise the disk cache).
void clear_memory_cache();

}  // namespace kiln::jit
