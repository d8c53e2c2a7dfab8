// random: the random_bits family. Threefry-2x32 (20 rounds) in MLX's counter layout, byte for byte what
// core/prims/random.py computes, split across the runtime's thread pool. Built into the extension rather
// than JIT-compiled: the code never depends on a graph, so there is nothing to specialise, and it stays
// available without a C++ compiler at run time.
#include "random.h"

#define KILN_NUMPY_BORROW
#include "numpy_api.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "program.h"
#include "runtime.h"

namespace nb = nanobind;

namespace kiln {

namespace {

// AVX-512 (a rotate instruction) and AVX2 builds of the hot loops, picked at load time; where ifunc
// clones are unavailable (macOS, other compilers and CPUs) the loops build once for the target.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define KILN_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KILN_SIMD_CLONES
#endif

constexpr uint32_t kParity = 0x1BD11BDA;  // Threefish's key-schedule constant

inline __attribute__((always_inline)) uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

// One block of 4 rounds with rotations r0..r3, then the key injection for `block`.
#define KILN_THREEFRY_ROUNDS(r0, r1, r2, r3)                                                   \
  x0 += x1; x1 = rotl(x1, r0) ^ x0;                                                          \
  x0 += x1; x1 = rotl(x1, r1) ^ x0;                                                          \
  x0 += x1; x1 = rotl(x1, r2) ^ x0;                                                          \
  x0 += x1; x1 = rotl(x1, r3) ^ x0;

inline __attribute__((always_inline)) void threefry2x32(const uint32_t ks[3], uint32_t& x0, uint32_t& x1) {
  x0 += ks[0];
  x1 += ks[1];
  KILN_THREEFRY_ROUNDS(13, 15, 26, 6)
  x0 += ks[1]; x1 += ks[2] + 1u;
  KILN_THREEFRY_ROUNDS(17, 29, 16, 24)
  x0 += ks[2]; x1 += ks[0] + 2u;
  KILN_THREEFRY_ROUNDS(13, 15, 26, 6)
  x0 += ks[0]; x1 += ks[1] + 3u;
  KILN_THREEFRY_ROUNDS(17, 29, 16, 24)
  x0 += ks[1]; x1 += ks[2] + 4u;
  KILN_THREEFRY_ROUNDS(13, 15, 26, 6)
  x0 += ks[2]; x1 += ks[0] + 5u;
}

#undef KILN_THREEFRY_ROUNDS

// What one launch needs; passed through the runtime's launch pointer (the pool never reads it).
struct BitsJob {
  const uint32_t* keys;  // (num_keys, 2)
  char* out;             // num_keys regions of bytes_per_key bytes
  int64_t bytes_per_key;
  int64_t half;          // counter pairs per key (words per key / 2, rounded down)
  int64_t high_offset;   // word index of a pair's second word: half + (words per key odd)
  bool uniform = false;  // write float32 samples span * u + low instead of the bits
  float low = 0.0f;
  float span = 1.0f;
};

constexpr float kTwoPow32 = 4294967296.0f;       // float32(UINT32_MAX), the divisor MLX uses
constexpr float kBelowOne = 0.99999994039535522f;  // the largest float32 below 1

// MLX's uniform on one word, each step rounded as its ops round it (this file builds with
// -ffp-contract=off: no fused multiply-add).
inline float uniform_sample(uint32_t bits, float low, float span) {
  float u = static_cast<float>(bits) / kTwoPow32;
  u = u < kBelowOne ? u : kBelowOne;
  return span * u + low;
}

// The words of a chunk as float32 samples, in place (the same 4 bytes per element).
KILN_SIMD_CLONES void words_to_uniform(uint32_t* __restrict words, int64_t n, float low, float span) {
  for (int64_t t = 0; t < n; ++t) {
    const float f = uniform_sample(words[t], low, span);
    std::memcpy(&words[t], &f, 4);
  }
}

// Word `w` of a key's region; the region's last word may be cut short (MLX truncates it).
inline void store_word(char* region, int64_t bytes, int64_t w, uint32_t value) {
  const int64_t at = 4 * w;
  if (at + 4 <= bytes) {
    std::memcpy(region + at, &value, 4);
  } else {
    std::memcpy(region + at, &value, static_cast<size_t>(bytes - at));
  }
}

// Counters j in [begin, begin + n) of one key: low words to low[], high words to high[] (counter j + high0).
// Lanes are independent, so the loop vectorises.
KILN_SIMD_CLONES void hash_pairs(uint32_t k0, uint32_t k1, uint32_t* __restrict low, uint32_t* __restrict high,
                                 int64_t begin, int64_t n, uint32_t high0) {
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ kParity};
  for (int64_t t = 0; t < n; ++t) {
    uint32_t x0 = static_cast<uint32_t>(begin + t);
    uint32_t x1 = x0 + high0;
    threefry2x32(ks, x0, x1);
    low[t] = x0;
    high[t] = x1;
  }
}

void bits_kernel(const kiln_launch* launch, int64_t begin, int64_t end) {
  const auto* job = reinterpret_cast<const BitsJob*>(launch);
  constexpr int64_t kChunk = 1024;
  uint32_t low[kChunk];
  uint32_t high[kChunk];
  for (int64_t i = begin; i < end;) {
    const int64_t key = i / job->half;
    const int64_t j0 = i % job->half;
    const int64_t j1 = std::min<int64_t>({job->half, j0 + kChunk, j0 + (end - i)});
    const uint32_t k0 = job->keys[2 * key];
    const uint32_t k1 = job->keys[2 * key + 1];
    hash_pairs(k0, k1, low, high, j0, j1 - j0, static_cast<uint32_t>(job->high_offset));
    if (job->uniform) {
      words_to_uniform(low, j1 - j0, job->low, job->span);
      words_to_uniform(high, j1 - j0, job->low, job->span);
    }
    char* region = job->out + key * job->bytes_per_key;
    const int64_t bytes = job->bytes_per_key;
    const int64_t n = j1 - j0;
    const int64_t last_high = j1 - 1 + job->high_offset;
    if (4 * (last_high + 1) <= bytes) {  // every word whole: plain copies
      std::memcpy(region + 4 * j0, low, static_cast<size_t>(4 * n));
      std::memcpy(region + 4 * (j0 + job->high_offset), high, static_cast<size_t>(4 * n));
    } else {
      for (int64_t t = 0; t < n; ++t) {
        store_word(region, bytes, j0 + t, low[t]);
        store_word(region, bytes, j0 + t + job->high_offset, high[t]);
      }
    }
    i += n;
  }
}

}  // namespace

namespace {

// keys (..., 2) as a C-contiguous uint32 array, or a Python error.
nb::object key_array(nb::handle keys_obj, int64_t* num_keys, std::vector<int64_t>* out_shape) {
  PyObject* keys_arr = PyArray_FROM_OTF(keys_obj.ptr(), NPY_UINT32, NPY_ARRAY_IN_ARRAY);
  if (!keys_arr) {
    throw nb::python_error();
  }
  nb::object owner = nb::steal(keys_arr);
  auto* keys = reinterpret_cast<PyArrayObject*>(keys_arr);
  const int kd = PyArray_NDIM(keys);
  if (kd < 1 || PyArray_DIM(keys, kd - 1) != 2) {
    throw std::invalid_argument("[bits] Expected key shape (2).");
  }
  *num_keys = 1;
  for (int d = 0; d + 1 < kd; ++d) {
    out_shape->push_back(PyArray_DIM(keys, d));
    *num_keys *= PyArray_DIM(keys, d);
  }
  return owner;
}

// Fill job.out (already sized) for every key: the pairs across the pool, then each key's middle word.
void run_bits(BitsJob& job, int64_t num_keys, int64_t words) {
  if (num_keys == 0 || words == 0) {
    return;
  }
  if (job.half > 0) {
    nb::gil_scoped_release release;
    runtime::launch(bits_kernel, reinterpret_cast<const kiln_launch*>(&job), num_keys * job.half, true);
  }
  if (words % 2 != 0) {  // the middle word: the first half of the hash of counter (half, 0)
    for (int64_t key = 0; key < num_keys; ++key) {
      const uint32_t k0 = job.keys[2 * key];
      const uint32_t k1 = job.keys[2 * key + 1];
      const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ kParity};
      uint32_t x0 = static_cast<uint32_t>(job.half);
      uint32_t x1 = 0;
      threefry2x32(ks, x0, x1);
      if (job.uniform) {
        const float f = uniform_sample(x0, job.low, job.span);
        std::memcpy(&x0, &f, 4);
      }
      store_word(job.out + key * job.bytes_per_key, job.bytes_per_key, job.half, x0);
    }
  }
}

nb::object draw(nb::handle keys_obj, const std::vector<int64_t>& shape, int width, bool uniform, float low,
                float span) {
  int64_t num_keys = 0;
  std::vector<int64_t> out_shape;
  nb::object keys = key_array(keys_obj, &num_keys, &out_shape);
  int64_t per_key = 1;
  for (int64_t s : shape) {
    out_shape.push_back(s);
    per_key *= s;
  }
  const int typenum = uniform ? NPY_FLOAT32 : width == 1 ? NPY_UINT8 : width == 2 ? NPY_UINT16 : NPY_UINT32;
  PyObject* out = new_pooled_array(typenum, static_cast<int>(out_shape.size()), out_shape.data());
  if (!out) {
    throw nb::python_error();
  }
  nb::object result = nb::steal(out);
  const int64_t bytes_per_key = per_key * width;
  const int64_t words = (bytes_per_key + 3) / 4;
  BitsJob job{static_cast<const uint32_t*>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(keys.ptr()))),
              static_cast<char*>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(out))), bytes_per_key, words / 2,
              words / 2 + words % 2, uniform, low, span};
  run_bits(job, num_keys, words);
  return result;
}

}  // namespace

nb::object random_bits(nb::handle keys, std::vector<int64_t> shape, int width) {
  if (width != 1 && width != 2 && width != 4) {
    throw std::invalid_argument("[bits] Bit width must be in {1, 2, 4} but got " + std::to_string(width) + ".");
  }
  return draw(keys, shape, width, false, 0.0f, 1.0f);
}

nb::object random_uniform(nb::handle keys, std::vector<int64_t> shape, float low, float high) {
  return draw(keys, shape, 4, true, low, high - low);
}

}  // namespace kiln
