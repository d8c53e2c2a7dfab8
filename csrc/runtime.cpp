// runtime: thread pool and buffer pool.
// The calling thread always works too, so a late wake-up costs nothing but that worker's share. Work is
// claimed in shrinking pieces (a quarter of what is left with two threads, between kMinClaim and a cap),
// so the caller never waits long for a worker's last piece. Pieces are claimed with a CAS on
// (generation, position), so a worker that wakes late can never take a piece of the wrong launch.
// A worker descheduled while it holds a piece (another process busy on its core) stalls the caller until
// it runs again; when the caller has waited longer than its own share took, the pool runs launches on
// the calling thread alone for a while (doubling on repeated stalls), then tries again.
#include "runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <list>
#include <string>
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

using Clock = std::chrono::steady_clock;

// Work is handed out in units of this many elements (a multiple of the kernels' block).
constexpr int64_t kUnit = KILN_BLOCK;
// The smallest piece claimed at once: 64 units, 16K elements, a few microseconds of work.
constexpr uint32_t kMinClaim = 64;
// The largest: 4096 units, 1M elements, a fraction of a millisecond.
constexpr uint32_t kMaxClaim = 4096;
// How long an idle worker spins for the next launch before it sleeps (a hot loop relaunches within this).
constexpr std::chrono::microseconds kSpin{250};
// A wait for workers longer than this, and longer than the caller's own work, counts as a stall.
constexpr std::chrono::microseconds kStallFloor{50};
// After a stall, launches run on the calling thread alone for this long, doubling up to kSoloMax.
constexpr std::chrono::milliseconds kSoloMin{10};
constexpr std::chrono::milliseconds kSoloMax{1000};

struct Job {
  kiln_kernel_fn fn = nullptr;
  const kiln_launch* L = nullptr;
  int64_t n = 0;
  int64_t unit = kUnit;          // elements (or tasks) per unit of work
  uint32_t min_claim = kMinClaim;  // the smallest piece, in units
  std::atomic<uint32_t> units{0};
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
    solo_until_ = Clock::time_point{};
    solo_for_ = kSoloMin;
  }

  // Split [0, n) in units of `unit`, claimed at least `min_claim` units at a time.
  void run(kiln_kernel_fn fn, const kiln_launch* L, int64_t n, int64_t unit = kUnit, uint32_t min_claim = kMinClaim) {
    std::lock_guard<std::mutex> guard(launch_mutex_);
    const int64_t units = (n + unit - 1) / unit;
    const Clock::time_point begin = Clock::now();
    if (threads_ <= 1 || units >= 0xffffffffll || begin < solo_until_) {
      fn(L, 0, n);
      return;
    }
    // Retire the previous launch's ticket before touching the job, so a late worker cannot claim from it.
    uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
    ticket_.store((static_cast<uint64_t>(gen) << 32) | 0xffffffffu, std::memory_order_seq_cst);
    job_.fn = fn;
    job_.L = L;
    job_.n = n;
    job_.unit = unit;
    job_.min_claim = min_claim;
    job_.units.store(static_cast<uint32_t>(units), std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    ticket_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    work(gen);
    const Clock::time_point worked = Clock::now();
    while (done_.load(std::memory_order_acquire) < static_cast<uint32_t>(units)) {
      KILN_PAUSE();
    }
    note_wait(worked - begin, Clock::now() - worked);
  }

  // Test aid: whether launches currently run on the calling thread alone after a stall.
  bool solo() {
    std::lock_guard<std::mutex> guard(launch_mutex_);
    return Clock::now() < solo_until_;
  }

 private:
  void note_wait(Clock::duration own, Clock::duration waited) {
    if (waited < kStallFloor || waited < own) {
      solo_for_ = kSoloMin;
      return;
    }
    solo_until_ = Clock::now() + solo_for_;
    solo_for_ = std::min<Clock::duration>(solo_for_ * 2, kSoloMax);
  }

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

  // Claim and run pieces of launch `gen` until none are left: a quarter (with two threads) of what is
  // left each time, so pieces shrink towards the end and everyone finishes together.
  void work(uint32_t gen) {
    const uint32_t share = static_cast<uint32_t>(threads_) * 2;
    // No piece holds more than an eighth of a thread's share, nor more than kMaxClaim: a worker
    // descheduled while it holds one keeps the caller waiting for no more than that piece.
    const uint32_t max_claim =
        std::max(job_.min_claim, std::min(kMaxClaim, job_.units.load(std::memory_order_relaxed) / (share * 4)));
    for (;;) {
      uint64_t t = ticket_.load(std::memory_order_acquire);
      const uint32_t units = job_.units.load(std::memory_order_relaxed);
      const uint32_t pos = static_cast<uint32_t>(t & 0xffffffffu);
      if ((t >> 32) != gen || pos >= units) {
        return;
      }
      const uint32_t left = units - pos;
      const uint32_t take = std::min(std::max(left / share, job_.min_claim), std::min(max_claim, left));
      if (!ticket_.compare_exchange_weak(t, t + take, std::memory_order_acq_rel)) {
        continue;
      }
      const int64_t begin = static_cast<int64_t>(pos) * job_.unit;
      const int64_t end = std::min<int64_t>(static_cast<int64_t>(pos + take) * job_.unit, job_.n);
      job_.fn(job_.L, begin, end);
      done_.fetch_add(take, std::memory_order_release);
    }
  }

  void loop() {
    uint32_t seen = generation_.load();
    while (!quit_.load()) {
      // Spin a little (a hot loop relaunches within microseconds), then sleep.
      const Clock::time_point until = Clock::now() + kSpin;
      while (generation_.load(std::memory_order_acquire) == seen) {
        for (int i = 0; i < 64; ++i) {
          KILN_PAUSE();
        }
        if (Clock::now() > until) {
          break;
        }
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
  Clock::time_point solo_until_{};                    // guarded by launch_mutex_
  Clock::duration solo_for_ = kSoloMin;               // guarded by launch_mutex_
  Job job_;
};

int default_threads() {
  // Only a plain positive integer (spaces around it allowed) counts; kiln.core.env warns about the rest.
  const char* env = std::getenv("KILN_NUM_THREADS");
  if (env) {
    std::string s(env);
    size_t first = s.find_first_not_of(" \t");
    size_t last = s.find_last_not_of(" \t");
    std::string digits = first == std::string::npos ? "" : s.substr(first, last - first + 1);
    bool valid = !digits.empty() && digits.size() <= 6 &&
                 digits.find_first_not_of("0123456789") == std::string::npos;
    int n = valid ? std::stoi(digits) : 0;
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

void launch_tasks(kiln_kernel_fn fn, const kiln_launch* L, int64_t tasks, int64_t grain) {
  const int threads = pool().threads();
  if (tasks < 2 * grain || threads <= 1) {
    fn(L, 0, tasks);
    return;
  }
  // Units of `grain` tasks, about sixteen per thread, so pieces shrink towards the end as for elements.
  const int64_t unit = std::max<int64_t>(grain, (tasks / (16 * threads)) / grain * grain);
  pool().run(fn, L, tasks, unit, 1);
}

void launch_rows(kiln_kernel_fn fn, const kiln_launch* L, int64_t rows, int64_t work) {
  const int threads = pool().threads();
  if (rows < 2 || work < parallel_threshold() || threads <= 1) {
    fn(L, 0, rows);
    return;
  }
  // Units of whole rows, not of KILN_BLOCK elements: with the element pool's units a piece was at least
  // 16K rows, so any launch of fewer rows (a softmax over 2048 rows of 4096) ran on one thread. A unit holds
  // enough rows for ~4K elements of work and there are about sixteen units per thread, as for tasks.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 12) / std::max<int64_t>(1, work / rows));
  const int64_t unit = std::max<int64_t>(grain, rows / (16 * threads));
  pool().run(fn, L, rows, unit, 1);
}

int64_t parallel_threshold() { return 1 << 15; }

int num_threads() { return pool().threads(); }

void set_num_threads(int n) { pool().resize(n); }

bool solo() { return pool().solo(); }

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
