// kiln's Metal preamble: the text every generated Metal kernel starts with. It defines the launch
// arguments, the index helpers, and the scalar functions the registry's expressions call (kiln_exp,
// kiln_cast, ...) under the same names as csrc/kernel_prelude.h (results: see Accuracy below), written in
// the part of C++14 that the Metal Shading Language accepts: no `if constexpr`, no double, no long long,
// overloads instead of type traits. On Linux, metal/metal_shim.h makes this file compile as C++.
//
// Accuracy (float32; float16 and bfloat16 compute in float32 and round once per op):
// - exact ops (arithmetic, comparisons, casts, floor/ceil/round, abs, sign, min/max, bit ops, integer
//   floor_divide/remainder/power/shifts) give the CPU kernels' bits: same expressions, same rounding.
// - exp, log, log2, log10, tan, the inverse and hyperbolic functions, sqrt, pow and atan2 call
//   `metal::precise::` (IEEE special values; error bounds as listed in the Metal Shading Language
//   specification's table of single-precision accuracy). Through the Linux shim they are libm's.
// - Metal has no expm1, log1p, erf, erfinv, sigmoid or logaddexp, and precise::sin/cos need not reduce huge
//   arguments exactly: those (and sin, cos) come from csrc/kiln_math.h, the
//   one header the CPU prelude includes too, so they compute the CPU kernels' bits (tests/test_metal.py
//   checks that through the shim; kiln_math.h says what a GPU must honour for it and lists the bounds:
//   expm1 2, log1p 3, erf 3, erfinv 3, sigmoid 3, sin 1, cos 1 ULP; sin and cos differ from the CPU's bits
//   below 2^20, where the CPU reduces in double, and erfinv in the last bit, where the CPU takes its log from
//   the C library, as MLX does). They use kiln_math.h's own exp and log
//   polynomials, not precise::exp and log, so they do not depend on the GPU's libraries.
// Kernels must be compiled with fast math off (MTLCompileOptions.mathMode = MTLMathModeSafe): NaN, Inf
// and signed zeros follow IEEE rules in kiln, as they do in the interpreter.
#if defined(__METAL_VERSION__)
#include <metal_stdlib>
using namespace metal;
#elif !defined(KILN_METAL_SHIM)
#error "kiln_metal.h is Metal source: a host C++ compiler needs metal/metal_shim.h included first"
#endif

// ---- launch arguments (the Metal twin of csrc/kernel_abi.h) --------------------------------------------
#ifndef KILN_MAX_DIMS
#define KILN_MAX_DIMS 16
#define KILN_MAX_ARGS 32
enum { KILN_FLAT = 0, KILN_STRIDED = 1 };
#endif

struct kiln_metal_args {
  int variant;  // KILN_FLAT: every input is contiguous (step 1) or one scalar (step 0); else KILN_STRIDED
  int ndim;     // strided: dimensions of the collapsed output index space
  long size;    // output elements; threads past the end do nothing (grids round up to threadgroups)
  long shape[KILN_MAX_DIMS];
  long step[KILN_MAX_ARGS];
  long strides[KILN_MAX_ARGS][KILN_MAX_DIMS];  // in elements; 0 on broadcast dimensions
};

// ---- index helpers ---------------------------------------------------------------------------------------
// A grid is at most 2^32 threads wide, so large outputs use a second grid dimension.
inline long kiln_index(uint3 gid, uint3 grid) { return (long)gid.x + (long)gid.y * (long)grid.x; }

// The element of input k that output element i reads.
inline long kiln_offset(constant kiln_metal_args& A, int k, long i) {
  if (A.variant == KILN_FLAT) {
    return i * A.step[k];
  }
  long offset = 0;
  long rest = i;
  for (int d = A.ndim - 1; d >= 0; --d) {
    const long c = rest % A.shape[d];
    rest /= A.shape[d];
    offset += c * A.strides[k][d];
  }
  return offset;
}

// ---- storage <-> compute types ---------------------------------------------------------------------------
// bool is stored as one byte (numpy's layout); bfloat16 is stored as its 16 bits.
inline bool kiln_ld_bool(uchar x) { return x != 0; }
inline uchar kiln_st_bool(bool x) { return (uchar)x; }
inline float kiln_ld_f16(half x) { return (float)x; }
inline half kiln_st_f16(float x) { return (half)x; }
inline float kiln_fix_f16(float x) { return (float)(half)x; }
inline float kiln_ld_bf16(ushort x) { return as_type<float>((uint)x << 16); }
inline ushort kiln_st_bf16(float x) {
  // Round to nearest even; NaNs stay NaN (quiet), as ml_dtypes does.
  const uint u = as_type<uint>(x);
  const uint rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint quiet = (u >> 16) | 0x40u;
  return (ushort)(metal::isnan(x) ? quiet : rounded);
}
inline float kiln_fix_bf16(float x) { return kiln_ld_bf16(kiln_st_bf16(x)); }

#define KILN_ID(T)                          \
  inline T kiln_ld_id(T x) { return x; }    \
  inline T kiln_st_id(T x) { return x; }
KILN_ID(uchar)
KILN_ID(ushort)
KILN_ID(uint)
KILN_ID(ulong)
KILN_ID(char)
KILN_ID(short)
KILN_ID(int)
KILN_ID(long)
KILN_ID(float)

// ---- astype: kiln_cast<kiln_i32>(x) ----------------------------------------------------------------------
// float -> int truncates, clamps to the range, and maps NaN/Inf to 0 (the interpreter's rule). The bounds
// compare in float: every float below 2^31 (2^63) converts exactly, and at or above it the result is the
// clamp, as the CPU's double comparison gives. 64-bit targets wrap to the minimum at 2^63 (2^64), as
// numpy's conversion does.
#define KILN_F2I(T, LO, HI, TOP)                                                     \
  inline T kiln_f2i_##T(float x) {                                                 \
    const float t = metal::isfinite(x) ? metal::trunc(x) : 0.0f;                   \
    const T clamped = t >= (float)(HI) ? (T)(HI) : (t <= (float)(LO) ? (T)(LO) : (T)t); \
    return (TOP && t >= (float)(HI)) ? (T)(LO) : clamped;                          \
  }
KILN_F2I(uchar, 0, 255, false)
KILN_F2I(ushort, 0, 65535, false)
KILN_F2I(uint, 0u, 4294967295u, false)
KILN_F2I(ulong, 0ul, 18446744073709551615ul, true)
KILN_F2I(char, -128, 127, false)
KILN_F2I(short, -32768, 32767, false)
KILN_F2I(int, -2147483647 - 1, 2147483647, false)
KILN_F2I(long, -9223372036854775807l - 1, 9223372036854775807l, true)

#define KILN_INT_TAG(TAG, T)                                    \
  struct TAG {                                                  \
    static T from(float x) { return kiln_f2i_##T(x); }          \
    static T from(bool x) { return (T)x; }                      \
    static T from(uchar x) { return (T)x; }                     \
    static T from(ushort x) { return (T)x; }                    \
    static T from(uint x) { return (T)x; }                      \
    static T from(ulong x) { return (T)x; }                     \
    static T from(char x) { return (T)x; }                      \
    static T from(short x) { return (T)x; }                     \
    static T from(int x) { return (T)x; }                       \
    static T from(long x) { return (T)x; }                      \
  };
KILN_INT_TAG(kiln_u8, uchar)
KILN_INT_TAG(kiln_u16, ushort)
KILN_INT_TAG(kiln_u32, uint)
KILN_INT_TAG(kiln_u64, ulong)
KILN_INT_TAG(kiln_i8, char)
KILN_INT_TAG(kiln_i16, short)
KILN_INT_TAG(kiln_i32, int)
KILN_INT_TAG(kiln_i64, long)
struct kiln_bool {
  template <class J>
  static bool from(J x) { return x != 0; }
};
struct kiln_f16 {
  // Integers reach half through float: exact below 2^24, and half overflows long before that.
  template <class J>
  static float from(J x) { return kiln_fix_f16((float)x); }
};
struct kiln_bf16 {
  template <class J>
  static float from(J x) { return kiln_fix_bf16((float)x); }
};
struct kiln_f32 {
  template <class J>
  static float from(J x) { return (float)x; }
};
template <class Tag, class X>
inline auto kiln_cast(X x) -> decltype(Tag::from(x)) { return Tag::from(x); }

// ---- exact ops -------------------------------------------------------------------------------------------
inline float kiln_abs(float x) { return metal::fabs(x); }
inline float kiln_sign(float x) { return x > 0 ? 1.0f : (x < 0 ? -1.0f : (x == 0 ? 0.0f : x)); }
// NaN wins; a tie returns b (numpy's choice for signed zeros).
inline float kiln_maximum(float a, float b) { return (a > b || metal::isnan(a)) ? a : b; }
inline float kiln_minimum(float a, float b) { return (a < b || metal::isnan(a)) ? a : b; }
inline float kiln_floor(float x) { return metal::floor(x); }
inline float kiln_ceil(float x) { return metal::ceil(x); }
inline float kiln_round(float x) { return metal::rint(x); }  // half to even
inline bool kiln_isnan(float x) { return metal::isnan(x); }
inline bool kiln_isinf(float x) { return metal::isinf(x); }
inline bool kiln_isfinite(float x) { return metal::isfinite(x); }
inline float kiln_sqrt(float x) { return metal::precise::sqrt(x); }
inline float kiln_rsqrt(float x) { return 1.0f / metal::precise::sqrt(x); }
inline float kiln_floor_divide(float x, float y) { return metal::floor(x / y); }
inline float kiln_remainder(float x, float y) {
  const float m = metal::fmod(x, y);
  const float adjusted = (m != 0 && ((y < 0) != (m < 0))) ? m + y : m;
  const float zero = metal::copysign(0.0f, y);
  return y == 0 ? m : (m == 0 ? zero : adjusted);
}
inline float kiln_power(float x, float y) { return metal::precise::pow(x, y); }

// Integers: every operation the CPU prelude has, one overload set per type.
#define KILN_INT_COMMON(T)                                                \
  inline T kiln_maximum(T a, T b) { return a >= b ? a : b; }              \
  inline T kiln_minimum(T a, T b) { return a <= b ? a : b; }              \
  inline T kiln_floor(T x) { return x; }                                  \
  inline T kiln_ceil(T x) { return x; }                                   \
  inline T kiln_round(T x) { return x; }                                  \
  inline bool kiln_isnan(T) { return false; }                             \
  inline bool kiln_isinf(T) { return false; }                             \
  inline bool kiln_isfinite(T) { return true; }

#define KILN_INT_POWER(T, U, BITS)                                        \
  inline T kiln_power_positive(T x, T y) {                                \
    /* Square-and-multiply in unsigned arithmetic wraps like repeated multiplication. */ \
    U base = (U)x;                                                        \
    U result = 1;                                                         \
    U e = y > 0 ? (U)y : (U)0;                                            \
    for (int i = 0; i < BITS; ++i) {                                      \
      result = (U)(result * ((e & 1) ? base : (U)1));                     \
      base = (U)(base * base);                                            \
      e = (U)(e >> 1);                                                    \
    }                                                                     \
    return (T)result;                                                     \
  }

#define KILN_SIGNED(T, U, BITS)                                           \
  KILN_INT_COMMON(T)                                                      \
  KILN_INT_POWER(T, U, BITS)                                              \
  inline T kiln_abs(T x) { return x < 0 ? (T)(-x) : x; }                  \
  inline T kiln_sign(T x) { return (T)((x > 0) - (x < 0)); }              \
  inline T kiln_floor_divide(T x, T y) {                                  \
    const T safe = (y == 0 || y == -1) ? (T)1 : y;                        \
    T q = (T)(x / safe);                                                  \
    const T r = (T)(x % safe);                                            \
    q = (T)(q - ((r != 0) && ((r < 0) != (safe < 0))));                   \
    q = y == -1 ? (T)(U)(0 - (U)x) : q; /* wraps at the minimum */        \
    return y == 0 ? (T)0 : q;                                             \
  }                                                                       \
  inline T kiln_remainder(T x, T y) {                                     \
    const T safe = (y == 0 || y == -1) ? (T)1 : y;                        \
    T r = (T)(x % safe);                                                  \
    r = (T)((r != 0 && ((r < 0) != (safe < 0))) ? r + safe : r);          \
    return y == 0 ? x : (y == -1 ? (T)0 : r); /* x % 0 is x */            \
  }                                                                       \
  inline T kiln_power(T x, T y) {                                         \
    /* A negative exponent gives 0 whatever the base, as in MLX. */       \
    return y >= 0 ? kiln_power_positive(x, y) : (T)0;                     \
  }                                                                       \
  inline T kiln_shl(T x, T y) {                                           \
    const bool ok = y >= 0 && y < (T)(BITS);                              \
    return ok ? (T)((U)x << (ok ? (int)y : 0)) : (T)0;                    \
  }                                                                       \
  inline T kiln_shr(T x, T y) {                                           \
    const bool ok = y >= 0 && y < (T)(BITS);                              \
    const T fill = x < 0 ? (T)-1 : (T)0;                                  \
    return ok ? (T)(x >> (ok ? (int)y : 0)) : fill;                       \
  }

#define KILN_UNSIGNED(T, BITS)                                            \
  KILN_INT_COMMON(T)                                                      \
  KILN_INT_POWER(T, T, BITS)                                              \
  inline T kiln_abs(T x) { return x; }                                    \
  inline T kiln_sign(T x) { return (T)(x > 0); }                          \
  inline T kiln_floor_divide(T x, T y) { return y == 0 ? (T)0 : (T)(x / (y == 0 ? (T)1 : y)); } \
  inline T kiln_remainder(T x, T y) { return y == 0 ? x : (T)(x % (y == 0 ? (T)1 : y)); }     \
  inline T kiln_power(T x, T y) { return kiln_power_positive(x, y); }    \
  inline T kiln_shl(T x, T y) {                                           \
    const bool ok = y < (T)(BITS); /* unsigned: never negative */         \
    return ok ? (T)(x << (ok ? (int)y : 0)) : (T)0;                       \
  }                                                                       \
  inline T kiln_shr(T x, T y) {                                           \
    const bool ok = y < (T)(BITS);                                        \
    return ok ? (T)(x >> (ok ? (int)y : 0)) : (T)0;                       \
  }

KILN_SIGNED(char, uchar, 8)
KILN_SIGNED(short, ushort, 16)
KILN_SIGNED(int, uint, 32)
KILN_SIGNED(long, ulong, 64)
KILN_UNSIGNED(uchar, 8)
KILN_UNSIGNED(ushort, 16)
KILN_UNSIGNED(uint, 32)
KILN_UNSIGNED(ulong, 64)

// bool behaves as the unsigned byte it is stored as.
KILN_INT_COMMON(bool)
inline bool kiln_abs(bool x) { return x; }
inline bool kiln_sign(bool x) { return x; }
inline bool kiln_floor_divide(bool x, bool y) { return kiln_floor_divide((uchar)x, (uchar)y) != 0; }
inline bool kiln_remainder(bool x, bool y) { return kiln_remainder((uchar)x, (uchar)y) != 0; }

// ---- float32 math ----------------------------------------------------------------------------------------
inline float kiln_exp(float x) { return metal::precise::exp(x); }
inline float kiln_log(float x) { return metal::precise::log(x); }
inline float kiln_log2(float x) { return metal::precise::log2(x); }
inline float kiln_log10(float x) { return metal::precise::log10(x); }
inline float kiln_tan(float x) { return metal::precise::tan(x); }
inline float kiln_arcsin(float x) { return metal::precise::asin(x); }
inline float kiln_arccos(float x) { return metal::precise::acos(x); }
inline float kiln_arctan(float x) { return metal::precise::atan(x); }
inline float kiln_sinh(float x) { return metal::precise::sinh(x); }
inline float kiln_cosh(float x) { return metal::precise::cosh(x); }
inline float kiln_tanh(float x) { return metal::precise::tanh(x); }
inline float kiln_arcsinh(float x) { return metal::precise::asinh(x); }
inline float kiln_arccosh(float x) { return metal::precise::acosh(x); }
inline float kiln_arctanh(float x) { return metal::precise::atanh(x); }
inline float kiln_arctan2(float y, float x) { return metal::precise::atan2(y, x); }

// expm1, log1p, erf, sigmoid and logaddexp (and erfinv's polynomials): the CPU kernels' own float32 code,
// shared (bounds there).
#include "../csrc/kiln_math.h"

// sin and cos: kiln_math.h's exact reduction for every argument (the CPU uses it for |x| >= 2^20).
inline float kiln_sin(float x) { return kiln_sin_any(x); }
inline float kiln_cos(float x) { return kiln_cos_any(x); }

// erfinv: MLX's algorithm with kiln_poly_log for the C library's logf that the CPU kernels call (the two may
// differ in the last bit; 3 ULP both).
inline float kiln_erfinv(float x) { return kiln_erfinv_from_log(x, kiln_poly_log(kf::fma(x, -x, 1.0f))); }
