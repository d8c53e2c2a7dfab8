// metal_shim: lets generated Metal kernels and metal/kiln_metal.h compile and run as C++ on Linux, so the
// Metal renderer's output is executed in tests without a Mac. It maps Metal's address-space qualifiers
// (device, constant, thread), its type names (uchar ... ulong, half, uint3), the [[...]] argument
// attributes (ignored by a host compiler), `as_type` and the `metal::` math the preamble uses, and runs a
// kernel's grid as a serial loop (kiln_shim_launch). It is not a Metal emulator: no threadgroup memory,
// barriers, SIMD-group functions or textures, none of which elementwise kernels use.
// Use: include it before the Metal source (g++ -std=c++17 -Wno-attributes -include metal/metal_shim.h).
#pragma once
#define KILN_METAL_SHIM 1
// [[buffer(0)]], [[thread_position_in_grid]]: Metal's argument attributes mean nothing to a host compiler.
#pragma GCC diagnostic ignored "-Wattributes"

#include <stdint.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

static_assert(std::is_signed<char>::value, "Metal's char is signed: compile the shim with -fsigned-char");
static_assert(sizeof(long) == 8, "Metal's long is 64 bits: the shim needs an LP64 host");

typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;
typedef _Float16 half;
struct uint3 {
  uint x, y, z;
};

template <class To, class From>
inline To as_type(From x) {
  static_assert(sizeof(To) == sizeof(From), "as_type needs types of one size");
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}

// Only the float overloads Metal has: a double or an integer argument must not compile silently.
namespace metal {
#define KILN_SHIM_1(name, fn) \
  inline float name(float x) { return std::fn(x); }
#define KILN_SHIM_2(name, fn) \
  inline float name(float x, float y) { return std::fn(x, y); }
KILN_SHIM_1(fabs, fabs)
KILN_SHIM_1(floor, floor)
KILN_SHIM_1(ceil, ceil)
KILN_SHIM_1(trunc, trunc)
KILN_SHIM_1(rint, rint)
KILN_SHIM_2(copysign, copysign)
KILN_SHIM_2(fmod, fmod)
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline bool isnan(float x) { return std::isnan(x); }
inline bool isinf(float x) { return std::isinf(x); }
inline bool isfinite(float x) { return std::isfinite(x); }
namespace precise {
KILN_SHIM_1(sqrt, sqrt)
KILN_SHIM_1(exp, exp)
KILN_SHIM_1(log, log)
KILN_SHIM_1(log2, log2)
KILN_SHIM_1(log10, log10)
KILN_SHIM_1(sin, sin)
KILN_SHIM_1(cos, cos)
KILN_SHIM_1(tan, tan)
KILN_SHIM_1(asin, asin)
KILN_SHIM_1(acos, acos)
KILN_SHIM_1(atan, atan)
KILN_SHIM_1(sinh, sinh)
KILN_SHIM_1(cosh, cosh)
KILN_SHIM_1(tanh, tanh)
KILN_SHIM_1(asinh, asinh)
KILN_SHIM_1(acosh, acosh)
KILN_SHIM_1(atanh, atanh)
KILN_SHIM_2(pow, pow)
KILN_SHIM_2(atan2, atan2)
}  // namespace precise
#undef KILN_SHIM_1
#undef KILN_SHIM_2
}  // namespace metal

// Metal's keywords, defined after every standard header (std::thread would not survive `thread`).
#define kernel static
#define device
#define constant const
#define thread

// Run output elements [begin, end) of a generated kernel `fn` one by one, as a grid of threads would.
// Launch is kiln_launch (csrc/kernel_abi.h): inputs, output and the variant the runtime chose. fn's
// parameters are the input pointers, the output pointer, the arguments, and the two grid positions.
template <class Args, class Launch, class... P, size_t... J>
inline void kiln_shim_call(void (*fn)(P...), const Launch* L, const Args& A, uint3 gid, uint3 grid,
                           std::index_sequence<J...>) {
  using Params = std::tuple<P...>;
  constexpr size_t buffers = sizeof...(J);
  fn(((std::tuple_element_t<J, Params>)(J + 1 < buffers ? (void*)L->in[J] : (void*)L->out))..., A, gid, grid);
}

template <class Launch, class... P>
inline void kiln_shim_launch(void (*fn)(P...), const Launch* L, int64_t begin, int64_t end) {
  using ArgsRef = std::tuple_element_t<sizeof...(P) - 3, std::tuple<P...>>;
  using Args = std::remove_const_t<std::remove_reference_t<ArgsRef>>;
  static_assert(sizeof(Args::shape) == sizeof(L->shape) && sizeof(Args::strides) == sizeof(L->strides) &&
                    sizeof(Args::step) == sizeof(L->step),
                "kiln_metal_args and kiln_launch disagree on their limits");
  Args A;
  A.variant = L->variant;
  A.ndim = L->ndim;
  A.size = end;
  std::memcpy(A.shape, L->shape, sizeof A.shape);
  std::memcpy(A.step, L->step, sizeof A.step);
  std::memcpy(A.strides, L->strides, sizeof A.strides);
  const uint width = 1u << 30;
  const uint3 grid = {width, (uint)((end + width - 1) / width), 1u};
  for (int64_t i = begin; i < end; ++i) {
    const uint3 gid = {(uint)(i % width), (uint)(i / width), 0u};
    kiln_shim_call(fn, L, A, gid, grid, std::make_index_sequence<sizeof...(P) - 3>());
  }
}
