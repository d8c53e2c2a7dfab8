// runtime: thread pool and buffer pool.
// The pool's workers spin briefly for new work, then sleep; the calling thread always works too, so a
// late wake-up costs nothing but that worker's share. Chunks are claimed with a CAS on (generation, index)
// so a worker that wakes late can never take a chunk of the wrong launch.
#include "runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define KILN_PAUSE() _mm_pause()
#else
#define KILN_PAUSE() std::this_thread::yield()
#endif

namespace kiln::runtime {

namespace {

struct Job {
  kiln_kernel_fn fn = nullptr;
  const kiln_launch* L = nullptr;
  int64_t n = 0;
  int64_t chunk = 0;
  std::atomic<uint32_t> num_chunks{0};
};

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int threads() const { return threads_; }

  void resize(int threads) {
    std::lock_guard<std::mutex> guard(launch_mutex_);
    stop();
    start(threads);
  }

  void run(kiln_kernel_fn fn, const kiln_launch* L, int64_t n) {
    std::lock_guard<std::mutex> guard(launch_mutex_);
    if (threads_ <= 1) {
      fn(L, 0, n);
      return;
    }
    // A few chunks per thread balance uneven progress; each chunk is a multiple of the block size.
    int64_t chunks = static_cast<int64_t>(threads_) * 4;
    int64_t chunk = (n + chunks - 1) / chunks;
    chunk = (chunk + KILN_BLOCK - 1) / KILN_BLOCK * KILN_BLOCK;
    // Retire the previous launch's ticket before touching the job, so a late worker cannot claim from it.
    uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
    ticket_.store((static_cast<uint64_t>(gen) << 32) | 0xffffffffu, std::memory_order_seq_cst);
    job_.fn = fn;
    job_.L = L;
    job_.n = n;
    job_.chunk = chunk;
    job_.num_chunks.store(static_cast<uint32_t>((n + chunk - 1) / chunk), std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    ticket_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    work(gen);
    while (done_.load(std::memory_order_acquire) < job_.num_chunks.load(std::memory_order_relaxed)) {
      KILN_PAUSE();
    }
  }

 private:
  void start(int threads) {
    threads_ = threads < 1 ? 1 : threads;
    quit_.store(false);
    for (int i = 1; i < threads_; ++i) {
      workers_.emplace_back([this] { loop(); });
    }
  }

  void stop() {
    quit_.store(true);
    generation_.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    for (auto& t : workers_) {
      t.join();
    }
    workers_.clear();
  }

  // Claim and run chunks of launch `gen` until none are left.
  void work(uint32_t gen) {
    for (;;) {
      uint64_t t = ticket_.load(std::memory_order_acquire);
      if ((t >> 32) != gen || (t & 0xffffffffu) >= job_.num_chunks.load(std::memory_order_relaxed)) {
        return;
      }
      if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
        continue;
      }
      int64_t begin = static_cast<int64_t>(t & 0xffffffffu) * job_.chunk;
      int64_t end = begin + job_.chunk < job_.n ? begin + job_.chunk : job_.n;
      job_.fn(job_.L, begin, end);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop() {
    uint32_t seen = generation_.load();
    while (!quit_.load()) {
      // Spin a little (a hand-off within microseconds is common in a hot loop), then sleep.
      for (int i = 0; i < 20000 && generation_.load(std::memory_order_acquire) == seen; ++i) {
        KILN_PAUSE();
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1);
      }
      seen = generation_.load(std::memory_order_acquire);
      if (quit_.load()) {
        return;
      }
      work(seen);
    }
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex launch_mutex_;
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> ticket_{0};
  std::atomic<uint32_t> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  Job job_;
};

int default_threads() {
  const char* env = std::getenv("KILN_NUM_THREADS");
  if (env && *env) {
    int n = std::atoi(env);
    if (n >= 1) {
      return n;
    }
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

Pool& pool() {
  // Leaked on purpose: joining threads during interpreter shutdown is how peers crash at exit.
  static Pool* p = new Pool(default_threads());
  return *p;
}

// ---- buffers -----------------------------------------------------------------------------------
struct Cached {
  void* p;
  size_t bytes;
};

std::mutex g_buf_mutex;
std::list<Cached> g_cache;  // most recently returned first
size_t g_cached = 0;

size_t page_round(size_t bytes) {
  const size_t page = 4096;
  return (bytes + page - 1) / page * page;
}

size_t cache_limit() {
  static size_t limit = [] {
    const char* env = std::getenv("KILN_BUFFER_CACHE_MB");
    if (env && *env) {
      return static_cast<size_t>(std::atoll(env)) << 20;
    }
    long pages = ::sysconf(_SC_PHYS_PAGES);
    long size = ::sysconf(_SC_PAGE_SIZE);
    size_t phys = pages > 0 && size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(size) : (1ull << 32);
    return phys / 8;
  }();
  return limit;
}

void release(void* p, size_t bytes) { ::munmap(p, page_round(bytes)); }

}  // namespace

void launch(kiln_kernel_fn fn, const kiln_launch* L, int64_t n, bool parallel) {
  if (!parallel || n < parallel_threshold() || pool().threads() <= 1) {
    fn(L, 0, n);
    return;
  }
  pool().run(fn, L, n);
}

int64_t parallel_threshold() { return 1 << 15; }

int num_threads() { return pool().threads(); }

void set_num_threads(int n) { pool().resize(n); }

size_t buffer_min_bytes() { return 1 << 20; }

void* buffer_get(size_t bytes) {
  const size_t rounded = page_round(bytes);
  {
    std::lock_guard<std::mutex> lock(g_buf_mutex);
    for (auto it = g_cache.begin(); it != g_cache.end(); ++it) {
      if (page_round(it->bytes) == rounded) {
        void* p = it->p;
        g_cached -= rounded;
        g_cache.erase(it);
        return p;
      }
    }
  }
  void* p = ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return nullptr;
  }
#ifdef MADV_HUGEPAGE
  // Huge pages cut the first-touch cost of a fresh buffer by ~500x fewer faults.
  ::madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

void buffer_put(void* p, size_t bytes) {
  const size_t rounded = page_round(bytes);
  std::vector<Cached> evicted;
  {
    std::lock_guard<std::mutex> lock(g_buf_mutex);
    if (rounded > cache_limit()) {
      evicted.push_back({p, bytes});
    } else {
      g_cache.push_front({p, bytes});
      g_cached += rounded;
      while (g_cached > cache_limit() || g_cache.size() > 16) {
        Cached old = g_cache.back();
        g_cache.pop_back();
        g_cached -= page_round(old.bytes);
        evicted.push_back(old);
      }
    }
  }
  for (const Cached& c : evicted) {
    release(c.p, c.bytes);
  }
}

size_t buffer_cached_bytes() {
  std::lock_guard<std::mutex> lock(g_buf_mutex);
  return g_cached;
}

void buffer_trim() {
  std::list<Cached> all;
  {
    std::lock_guard<std::mutex> lock(g_buf_mutex);
    all.swap(g_cache);
    g_cached = 0;
  }
  for (const Cached& c : all) {
    release(c.p, c.bytes);
  }
}

}  // namespace kiln::runtime
