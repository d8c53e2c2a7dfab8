// jit: compile, load, and cache generated kernels.
// Disk layout (one flat directory, 0700, owned by the user):
//   <key>.ok                the content hash of the library, written last, atomically
//   <key>-<hash>.so         the library; a reader checks its bytes against <hash> before dlopen
// Every file is 0600 and every directory kiln creates 0700, whatever the umask (set with chmod after
// creation); an entry that is not a regular file owned by us and closed to others is never loaded.
// key = hash(source, compiler identity, flags, kiln version). Anything that fails a check is deleted and
// rebuilt. Temporary files get unique names and are renamed into place, so concurrent writers are safe.
#include "jit.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#ifndef KILN_VERSION
#define KILN_VERSION "0.0.0"
#endif

namespace kiln::jit {

namespace {

std::mutex g_mutex;
std::unordered_map<std::string, kiln_kernel_fn> g_loaded;  // by cache key
std::atomic<uint64_t> g_counter{0};

// Two independent 64-bit hashes: a 128-bit key with no adversary in sight (the directory is private).
std::string hash128(const std::string& s) {
  uint64_t h1 = 1469598103934665603ull;
  uint64_t h2 = 0x6a09e667f3bcc909ull;
  for (unsigned char c : s) {
    h1 = (h1 ^ c) * 1099511628211ull;
    h2 = (h2 + c) * 0x9e3779b97f4a7c15ull;
    h2 ^= h2 >> 29;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, h1, h2);
  return buf;
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Write `data` to `path` atomically: a unique temporary in the same directory, then rename.
bool write_atomic(const std::string& dir, const std::string& path, const std::string& data) {
  std::string tmp = dir + "/tmp-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++) + ".part";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    return false;
  }
  bool ok = ::fchmod(fd, 0600) == 0;  // the umask may have taken bits away; 0600 exactly
  ok = ok && ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

std::string home_cache() {
  const char* env = std::getenv("KILN_CACHE_DIR");
  if (env && *env) {
    return env;
  }
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) {
    return std::string(xdg) + "/kiln";
  }
  const char* home = std::getenv("HOME");
  if (!home || !*home) {
    return "";
  }
  return std::string(home) + "/.cache/kiln";
}

bool make_dirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), 0700) == 0) {
        ::chmod(part.c_str(), 0700);  // a umask such as 0277 would leave it unusable
      } else if (errno != EEXIST) {
        return false;
      }
    }
  }
  return true;
}

// A directory is trusted only if it is a real directory we own that nobody else can write.
std::string check_dir(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    return "cannot stat it";
  }
  if (!S_ISDIR(st.st_mode)) {
    return "it is not a directory";
  }
  if (st.st_uid != ::geteuid()) {
    return "it is owned by another user";
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    return "other users can write to it";
  }
  return "";
}

// A cache file is trusted only if it is a regular file (not a link) we own that no one else can read or write.
bool private_file(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
         (st.st_mode & (S_IRWXG | S_IRWXO)) == 0;
}

kiln_kernel_fn open_library(const std::string& path, const std::string& name, const std::string& key,
                            std::string* error) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    *error = ::dlerror();
    return nullptr;
  }
  auto* stored_key = reinterpret_cast<const char*>(::dlsym(handle, "kiln_cache_key"));
  auto fn = reinterpret_cast<kiln_kernel_fn>(::dlsym(handle, name.c_str()));
  if (!stored_key || key != stored_key || !fn) {
    *error = "the library does not hold the expected kernel";
    ::dlclose(handle);
    return nullptr;
  }
  return fn;  // never closed: the kernel may be in use for the life of the process
}

kiln_kernel_fn load_from_disk(const std::string& dir, const std::string& key, const std::string& name) {
  std::string ok_path = dir + "/" + key + ".ok";
  std::string sum;
  if (!read_file(ok_path, &sum)) {
    return nullptr;
  }
  std::string lib = dir + "/" + key + "-" + sum + ".so";
  std::string bytes;
  std::string error;
  kiln_kernel_fn fn = nullptr;
  if (sum.size() == 32 && private_file(ok_path) && private_file(lib) && read_file(lib, &bytes) &&
      hash128(bytes) == sum) {
    fn = open_library(lib, name, key, &error);
  }
  if (!fn) {
    // Corrupt, truncated, foreign or open to other users: delete it; the caller rebuilds it.
    ::unlink(ok_path.c_str());
    if (sum.size() == 32 && sum.find('/') == std::string::npos) {
      ::unlink(lib.c_str());
    }
  }
  return fn;
}

std::string run_compiler(const std::string& src_path, const std::string& out_path, int* status) {
  std::string cmd = compiler_command() + " " + compile_flags() + " -o " + quote(out_path) + " " + quote(src_path) +
                    " 2>&1";
  std::string output;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) {
    *status = -1;
    return "could not run: " + cmd;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) {
    output.append(buf, n);
  }
  *status = ::pclose(pipe);
  return cmd + "\n" + output;
}

std::string private_tmp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/kiln-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    throw std::runtime_error("[compile] cannot create a temporary directory for kernel compilation");
  }
  return buf.data();
}

}  // namespace

std::string compiler_command() {
  const char* cxx = std::getenv("CXX");
  return cxx && *cxx ? cxx : "c++";
}

std::string compiler_path() {
  std::string cmd = compiler_command();
  std::string first = cmd.substr(0, cmd.find(' '));
  if (first.find('/') != std::string::npos) {
    return ::access(first.c_str(), X_OK) == 0 ? first : "";
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + first;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

std::string compile_flags() {
#if defined(__aarch64__) && defined(__APPLE__)
  const char* arch = "-mcpu=native";
#else
  const char* arch = "-march=native";
#endif
  std::string flags = std::string("-O3 ") + arch +
                      " -fPIC -shared -std=c++17 -fno-math-errno -fwrapv -ffp-contract=off -fno-plt";
  const char* extra = std::getenv("KILN_CXXFLAGS");
  if (extra && *extra) {
    flags += std::string(" ") + extra;
  }
  return flags;
}

std::string cache_dir(std::string* why) {
  std::string dir = home_cache();
  if (dir.empty()) {
    *why = "no cache directory ($KILN_CACHE_DIR or $HOME is needed)";
    return "";
  }
  if (!make_dirs(dir)) {
    *why = "cannot create kernel cache directory " + dir + ": " + std::strerror(errno);
    return "";
  }
  std::string problem = check_dir(dir);
  if (!problem.empty()) {
    *why = "not using kernel cache directory " + dir + " because " + problem +
           " (kernels are compiled into a private temporary directory instead)";
    return "";
  }
  return dir;
}

void clear_memory_cache() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_loaded.clear();
}

Loaded load(const std::string& name, const std::string& full_source) {
  std::string path = compiler_path();
  struct stat st {};
  if (!path.empty()) {
    ::stat(path.c_str(), &st);
  }
  char ident[256];
  std::snprintf(ident, sizeof ident, "%s|%lld|%lld", compiler_command().c_str(), (long long)st.st_size,
                (long long)st.st_mtime);
  const std::string key = hash128(full_source + '\0' + ident + '\0' + compile_flags() + '\0' + KILN_VERSION);

  std::lock_guard<std::mutex> lock(g_mutex);
  Loaded result;
  auto it = g_loaded.find(key);
  if (it != g_loaded.end()) {
    result.fn = it->second;
    return result;
  }
  if (path.empty()) {
    throw std::runtime_error("[compile] no C++ compiler found ($CXX or c++ on PATH)");
  }
  std::string why;
  std::string dir = cache_dir(&why);
  result.warning = why;
  if (!dir.empty()) {
    result.fn = load_from_disk(dir, key, name);
    if (result.fn) {
      result.from_disk = true;
      g_loaded[key] = result.fn;
      return result;
    }
  }
  const bool private_dir = dir.empty();
  const std::string work = private_dir ? private_tmp_dir() : dir;
  const std::string stem = work + "/tmp-" + key + "-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  const std::string src_path = stem + ".cpp";
  const std::string tmp_lib = stem + ".so";
  const std::string source = full_source + "\nextern \"C\" const char kiln_cache_key[] = \"" + key + "\";\n";
  if (!write_atomic(work, src_path, source)) {
    throw std::runtime_error("[compile] cannot write kernel source in " + work);
  }
  int status = 0;
  std::string output = run_compiler(src_path, tmp_lib, &status);
  ::unlink(src_path.c_str());
  if (status != 0) {
    ::unlink(tmp_lib.c_str());
    if (private_dir) {
      ::rmdir(work.c_str());
    }
    throw std::runtime_error("[compile] kernel " + name + " failed to compile:\n" + output);
  }
  std::string bytes;
  // The linker creates the library 0777 minus the umask (0777 itself under umask 000).
  if (::chmod(tmp_lib.c_str(), 0600) != 0 || !read_file(tmp_lib, &bytes)) {
    throw std::runtime_error("[compile] compiled kernel " + name + " is missing");
  }
  const std::string sum = hash128(bytes);
  const std::string lib = work + "/" + key + "-" + sum + ".so";
  if (::rename(tmp_lib.c_str(), lib.c_str()) != 0) {
    ::unlink(tmp_lib.c_str());
    throw std::runtime_error("[compile] cannot move compiled kernel into " + work);
  }
  if (!private_dir) {
    write_atomic(work, work + "/" + key + ".ok", sum);
  }
  std::string error;
  result.fn = open_library(lib, name, key, &error);
  if (private_dir) {
    ::unlink(lib.c_str());
    ::rmdir(work.c_str());
  }
  if (!result.fn) {
    throw std::runtime_error("[compile] cannot load compiled kernel " + name + ": " + error);
  }
  result.compiled = true;
  g_loaded[key] = result.fn;
  return result;
}

}  // namespace kiln::jit
