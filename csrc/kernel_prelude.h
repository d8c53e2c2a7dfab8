// kiln kernel prelude: the scalar functions generated CPU kernels call (after kernel_abi.h).
// Everything is inline and branch-free where it matters, so loops that use it vectorise.
// Kernels are compiled with -fwrapv (integer arithmetic wraps like numpy) and -ffp-contract=off
// (a*b+c stays two roundings, so exact ops match numpy bit for bit); the math below asks for FMA itself.
#include <stdint.h>

#include <limits>
#include <type_traits>

#define KILN_INLINE static inline __attribute__((always_inline))

// libm through compiler builtins: <cmath> alone costs ~150 ms of every kernel compile.
#define KILN_INF __builtin_inff()
#define KILN_NAN __builtin_nanf("")
namespace km {
KILN_INLINE float floor(float x) { return __builtin_floorf(x); }
KILN_INLINE double floor(double x) { return __builtin_floor(x); }
KILN_INLINE float ceil(float x) { return __builtin_ceilf(x); }
KILN_INLINE double ceil(double x) { return __builtin_ceil(x); }
KILN_INLINE float trunc(float x) { return __builtin_truncf(x); }
KILN_INLINE double trunc(double x) { return __builtin_trunc(x); }
KILN_INLINE float rint(float x) { return __builtin_rintf(x); }
KILN_INLINE double rint(double x) { return __builtin_rint(x); }
KILN_INLINE float sqrt(float x) { return __builtin_sqrtf(x); }
KILN_INLINE double sqrt(double x) { return __builtin_sqrt(x); }
KILN_INLINE float fabs(float x) { return __builtin_fabsf(x); }
KILN_INLINE double fabs(double x) { return __builtin_fabs(x); }
KILN_INLINE float exp(float x) { return __builtin_expf(x); }
KILN_INLINE double exp(double x) { return __builtin_exp(x); }
KILN_INLINE float expm1(float x) { return __builtin_expm1f(x); }
KILN_INLINE double expm1(double x) { return __builtin_expm1(x); }
KILN_INLINE float log(float x) { return __builtin_logf(x); }
KILN_INLINE double log(double x) { return __builtin_log(x); }
KILN_INLINE float log1p(float x) { return __builtin_log1pf(x); }
KILN_INLINE double log1p(double x) { return __builtin_log1p(x); }
KILN_INLINE float erf(float x) { return __builtin_erff(x); }
KILN_INLINE double erf(double x) { return __builtin_erf(x); }
KILN_INLINE float tanh(float x) { return __builtin_tanhf(x); }
KILN_INLINE double tanh(double x) { return __builtin_tanh(x); }
KILN_INLINE float sin(float x) { return __builtin_sinf(x); }
KILN_INLINE double sin(double x) { return __builtin_sin(x); }
KILN_INLINE float cos(float x) { return __builtin_cosf(x); }
KILN_INLINE double cos(double x) { return __builtin_cos(x); }
KILN_INLINE float log2(float x) { return __builtin_log2f(x); }
KILN_INLINE double log2(double x) { return __builtin_log2(x); }
KILN_INLINE float log10(float x) { return __builtin_log10f(x); }
KILN_INLINE double log10(double x) { return __builtin_log10(x); }
KILN_INLINE float tan(float x) { return __builtin_tanf(x); }
KILN_INLINE double tan(double x) { return __builtin_tan(x); }
KILN_INLINE float asin(float x) { return __builtin_asinf(x); }
KILN_INLINE double asin(double x) { return __builtin_asin(x); }
KILN_INLINE float acos(float x) { return __builtin_acosf(x); }
KILN_INLINE double acos(double x) { return __builtin_acos(x); }
KILN_INLINE float atan(float x) { return __builtin_atanf(x); }
KILN_INLINE double atan(double x) { return __builtin_atan(x); }
KILN_INLINE float sinh(float x) { return __builtin_sinhf(x); }
KILN_INLINE double sinh(double x) { return __builtin_sinh(x); }
KILN_INLINE float cosh(float x) { return __builtin_coshf(x); }
KILN_INLINE double cosh(double x) { return __builtin_cosh(x); }
KILN_INLINE float asinh(float x) { return __builtin_asinhf(x); }
KILN_INLINE double asinh(double x) { return __builtin_asinh(x); }
KILN_INLINE float acosh(float x) { return __builtin_acoshf(x); }
KILN_INLINE double acosh(double x) { return __builtin_acosh(x); }
KILN_INLINE float atanh(float x) { return __builtin_atanhf(x); }
KILN_INLINE double atanh(double x) { return __builtin_atanh(x); }
KILN_INLINE float copysign(float x, float y) { return __builtin_copysignf(x, y); }
KILN_INLINE double copysign(double x, double y) { return __builtin_copysign(x, y); }
KILN_INLINE float fmod(float x, float y) { return __builtin_fmodf(x, y); }
KILN_INLINE double fmod(double x, double y) { return __builtin_fmod(x, y); }
KILN_INLINE float pow(float x, float y) { return __builtin_powf(x, y); }
KILN_INLINE double pow(double x, double y) { return __builtin_pow(x, y); }
KILN_INLINE float atan2(float x, float y) { return __builtin_atan2f(x, y); }
KILN_INLINE double atan2(double x, double y) { return __builtin_atan2(x, y); }
}  // namespace km

template <class To, class From>
KILN_INLINE To kiln_bits(From x) {
  return __builtin_bit_cast(To, x);
}

// Double fma for sin/cos (float fma is kiln_math.h's kf::fma).
#if defined(__FMA__) || defined(__aarch64__)
#define KILN_FMA(a, b, c) __builtin_fma(a, b, c)
#else
#define KILN_FMA(a, b, c) ((a) * (b) + (c))
#endif

KILN_INLINE float kiln_sel(bool c, float a, float b) { return c ? a : b; }

// ---- storage <-> compute types ------------------------------------------------------------------
// bool is stored as one byte (numpy's layout); float16/bfloat16 compute in float32 and round once per op.
#if defined(__FLT16_MAX__)
typedef _Float16 kiln_f16_t;
KILN_INLINE float kiln_ld_f16(kiln_f16_t x) { return (float)x; }
KILN_INLINE kiln_f16_t kiln_st_f16(float x) { return (kiln_f16_t)x; }
KILN_INLINE float kiln_fix_f16(double x) { return (float)(kiln_f16_t)x; }
KILN_INLINE float kiln_fix_f16(float x) { return (float)(kiln_f16_t)x; }
#else
#error "kiln kernels need a compiler with _Float16 (gcc >= 12 or clang >= 15)"
#endif

KILN_INLINE float kiln_ld_bf16(uint16_t x) { return kiln_bits<float>((uint32_t)x << 16); }
KILN_INLINE uint16_t kiln_st_bf16(float x) {
  // Round to nearest even; NaNs stay NaN (quiet), as ml_dtypes does.
  uint32_t u = kiln_bits<uint32_t>(x);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t quiet = (u >> 16) | 0x40u;
  return (uint16_t)(x != x ? quiet : rounded);
}
KILN_INLINE float kiln_fix_bf16(float x) { return kiln_ld_bf16(kiln_st_bf16(x)); }

KILN_INLINE bool kiln_ld_bool(uint8_t x) { return x != 0; }
KILN_INLINE uint8_t kiln_st_bool(bool x) { return (uint8_t)x; }
template <class T>
KILN_INLINE T kiln_ld_id(T x) { return x; }
template <class T>
KILN_INLINE T kiln_st_id(T x) { return x; }

// ---- astype ------------------------------------------------------------------------------------
// float -> int truncates, clamps to the range, and maps NaN/Inf to 0 (the interpreter's rule).
template <class I>
KILN_INLINE I kiln_f2i(double x) {
  double t = km::trunc(x);
  const double lo = (double)std::numeric_limits<I>::min();
  const double hi = (double)std::numeric_limits<I>::max();
  t = t < lo ? lo : t;
  t = t > hi ? hi : t;
  bool finite = x - x == 0.0;
  if (sizeof(I) == 8 && t >= hi) {
    // hi rounded up to 2^63 (2^64); numpy's conversion of that gives the minimum (0 for unsigned).
    return finite ? (std::is_signed<I>::value ? std::numeric_limits<I>::min() : (I)0) : (I)0;
  }
  return finite ? (I)t : (I)0;
}

template <class I>
struct kiln_int_tag {
  typedef I ct;
  KILN_INLINE I from(float x) { return kiln_f2i<I>((double)x); }
  KILN_INLINE I from(double x) { return kiln_f2i<I>(x); }
  template <class J>
  KILN_INLINE I from(J x) { return (I)x; }
};
struct kiln_bool {
  template <class J>
  KILN_INLINE bool from(J x) { return x != 0; }
};
struct kiln_u8 : kiln_int_tag<uint8_t> {};
struct kiln_u16 : kiln_int_tag<uint16_t> {};
struct kiln_u32 : kiln_int_tag<uint32_t> {};
struct kiln_u64 : kiln_int_tag<uint64_t> {};
struct kiln_i8 : kiln_int_tag<int8_t> {};
struct kiln_i16 : kiln_int_tag<int16_t> {};
struct kiln_i32 : kiln_int_tag<int32_t> {};
struct kiln_i64 : kiln_int_tag<int64_t> {};
struct kiln_f16 {
  KILN_INLINE float from(float x) { return kiln_fix_f16(x); }
  KILN_INLINE float from(double x) { return kiln_fix_f16(x); }
  template <class J>
  KILN_INLINE float from(J x) { return kiln_fix_f16((double)x); }
};
struct kiln_bf16 {
  template <class J>
  KILN_INLINE float from(J x) { return kiln_fix_bf16((float)x); }
};
struct kiln_f32 {
  template <class J>
  KILN_INLINE float from(J x) { return (float)x; }
};
struct kiln_f64 {
  template <class J>
  KILN_INLINE double from(J x) { return (double)x; }
};
template <class Tag, class X>
KILN_INLINE auto kiln_cast(X x) { return Tag::from(x); }

// ---- exact ops -----------------------------------------------------------------------------------
template <class T>
KILN_INLINE T kiln_abs(T x) {
  if constexpr (std::is_floating_point<T>::value) {
    return km::fabs(x);
  } else if constexpr (std::is_signed<T>::value) {
    return x < 0 ? (T)-x : x;
  } else {
    return x;
  }
}
template <class T>
KILN_INLINE T kiln_sign(T x) {
  if constexpr (std::is_floating_point<T>::value) {
    return x > 0 ? (T)1 : (x < 0 ? (T)-1 : (x == 0 ? (T)0 : x));
  } else if constexpr (std::is_same<T, bool>::value) {
    return x;
  } else {
    return (T)((x > 0) - (x < 0));
  }
}
template <class T>
KILN_INLINE T kiln_maximum(T a, T b) {
  if constexpr (std::is_floating_point<T>::value) {
    return (a > b || a != a) ? a : b;  // NaN wins; a tie returns b (numpy's choice for signed zeros)
  } else {
    return a >= b ? a : b;
  }
}
template <class T>
KILN_INLINE T kiln_minimum(T a, T b) {
  if constexpr (std::is_floating_point<T>::value) {
    return (a < b || a != a) ? a : b;
  } else {
    return a <= b ? a : b;
  }
}
template <class T>
KILN_INLINE T kiln_floor(T x) {
  if constexpr (std::is_floating_point<T>::value) return km::floor(x);
  else return x;
}
template <class T>
KILN_INLINE T kiln_ceil(T x) {
  if constexpr (std::is_floating_point<T>::value) return km::ceil(x);
  else return x;
}
template <class T>
KILN_INLINE T kiln_round(T x) {
  if constexpr (std::is_floating_point<T>::value) return km::rint(x);  // half to even
  else return x;
}
template <class T>
KILN_INLINE bool kiln_isnan(T x) { return x != x; }
template <class T>
KILN_INLINE bool kiln_isinf(T x) {
  if constexpr (std::is_floating_point<T>::value) return km::fabs(x) == (T)KILN_INF;
  else return false;
}
template <class T>
KILN_INLINE bool kiln_isfinite(T x) {
  if constexpr (std::is_floating_point<T>::value) return km::fabs(x) < (T)KILN_INF;
  else return true;
}
template <class T>
KILN_INLINE T kiln_invert(T x) {
  if constexpr (std::is_same<T, bool>::value) return !x;
  else return (T)~x;
}
KILN_INLINE float kiln_sqrt(float x) { return km::sqrt(x); }
KILN_INLINE double kiln_sqrt(double x) { return km::sqrt(x); }
KILN_INLINE float kiln_rsqrt(float x) { return 1.0f / km::sqrt(x); }
KILN_INLINE double kiln_rsqrt(double x) { return 1.0 / km::sqrt(x); }

template <class T>
KILN_INLINE T kiln_floor_divide(T x, T y) {
  if constexpr (std::is_floating_point<T>::value) {
    return km::floor(x / y);
  } else if constexpr (std::is_signed<T>::value) {
    typedef typename std::make_unsigned<T>::type U;
    T safe = (y == 0 || y == -1) ? (T)1 : y;
    T q = (T)(x / safe);
    T r = (T)(x % safe);
    q = (T)(q - ((r != 0) && ((r < 0) != (safe < 0))));
    q = y == -1 ? (T)(U)(0 - (U)x) : q;  // wraps at the minimum, like numpy
    return y == 0 ? (T)0 : q;
  } else {
    return y == 0 ? (T)0 : (T)(x / (y == 0 ? (T)1 : y));
  }
}
template <class T>
KILN_INLINE T kiln_remainder(T x, T y) {
  if constexpr (std::is_floating_point<T>::value) {
    T m = km::fmod(x, y);
    T adjusted = (m != 0 && ((y < 0) != (m < 0))) ? m + y : m;
    T zero = km::copysign((T)0, y);
    return y == 0 ? m : (m == 0 ? zero : adjusted);
  } else if constexpr (std::is_signed<T>::value) {
    T safe = (y == 0 || y == -1) ? (T)1 : y;
    T r = (T)(x % safe);
    r = (T)((r != 0 && ((r < 0) != (safe < 0))) ? r + safe : r);
    // x % 0 is x (so x == (x // y) * y + x % y holds for y == 0 too), as the interpreter defines it.
    return y == 0 ? x : (y == -1 ? (T)0 : r);
  } else {
    return y == 0 ? x : (T)(x % (y == 0 ? (T)1 : y));
  }
}
template <class T>
KILN_INLINE T kiln_power(T x, T y) {
  if constexpr (std::is_floating_point<T>::value) {
    return km::pow(x, y);
  } else {
    // Square-and-multiply in unsigned arithmetic wraps like repeated multiplication.
    typedef typename std::make_unsigned<T>::type U;
    U base = (U)x;
    U result = 1;
    U e = y > 0 ? (U)y : (U)0;
    for (int i = 0; i < (int)(8 * sizeof(T)); ++i) {
      result = (U)(result * ((e & 1) ? base : (U)1));
      base = (U)(base * base);
      e = (U)(e >> 1);
    }
    // A negative exponent gives 0 whatever the base (even 1 and -1), as in MLX.
    return y >= 0 ? (T)result : (T)0;
  }
}
template <class T>
KILN_INLINE T kiln_shl(T x, T y) {
  typedef typename std::make_unsigned<T>::type U;
  bool ok = y >= 0 && y < (T)(8 * sizeof(T));
  return ok ? (T)((U)x << (ok ? (int)y : 0)) : (T)0;
}
template <class T>
KILN_INLINE T kiln_shr(T x, T y) {
  bool ok = y >= 0 && y < (T)(8 * sizeof(T));
  T fill = (std::is_signed<T>::value && x < 0) ? (T)-1 : (T)0;
  return ok ? (T)(x >> (ok ? (int)y : 0)) : fill;
}

// ---- vectorisable float32 math -------------------------------------------------------------------
// expm1, log1p, erf, sigmoid, logaddexp, erfinv's polynomials and the exp, log and tanh polynomials live in
// kiln_math.h, which Metal kernels share (one source of truth, the same bits on both; bounds documented there).
// The double overloads below use libm; float16 and bfloat16 compute in float32.
#include "kiln_math.h"

KILN_INLINE float kiln_exp(float x) { return kiln_poly_exp(x); }
KILN_INLINE double kiln_exp(double x) { return km::exp(x); }
KILN_INLINE double kiln_expm1(double x) { return km::expm1(x); }
KILN_INLINE float kiln_log(float x) { return kiln_poly_log(x); }
KILN_INLINE double kiln_log(double x) { return km::log(x); }
KILN_INLINE double kiln_log1p(double x) { return km::log1p(x); }
KILN_INLINE double kiln_sigmoid(double x) {
  const double e = km::exp(-km::fabs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
KILN_INLINE float kiln_tanh(float x) { return kiln_poly_tanh(x); }
KILN_INLINE double kiln_tanh(double x) { return km::tanh(x); }
KILN_INLINE double kiln_erf(double x) { return km::erf(x); }
KILN_INLINE float kiln_libm_logf(float x) {
  // The C library's logf, the function MLX's CPU erfinv calls. The empty asm hides x's value, so a constant
  // argument is not folded at compile time (folding rounds correctly; glibc's logf does not always).
  __asm__("" : "+m"(x));
  return __builtin_logf(x);
}
KILN_INLINE float kiln_erfinv(float x) {
  // MLX's bits: its algorithm and its log (a libm call per element, so these loops do not vectorise).
  return kiln_erfinv_from_log(x, kiln_libm_logf(kf::fma(x, -x, 1.0f)));
}
KILN_INLINE double kiln_erfinv(double y) {
  // Newton steps from the float estimate converge to double precision.
  double x = (double)kiln_erfinv((float)y);
  for (int i = 0; i < 2; ++i) {
    double err = km::erf(x) - y;
    double step = err / (1.1283791670955126 * km::exp(-x * x));
    x = km::fabs(x) < KILN_INF ? x - step : x;
  }
  return km::fabs(y) < 1.0 ? x : (y == 1.0 ? KILN_INF : (y == -1.0 ? -KILN_INF : KILN_NAN));
}

// sin and cos for |x| < 2^20 share one reduction: x = q pi/2 + r, |r| <= pi/4, done in double (max error
// 1 ULP, measured 0.50; the error would grow with |x| beyond). Larger and non-finite arguments take a rarely
// taken branch to kiln_math.h's exact Payne-Hanek reduction (kiln_sin_any, 1 ULP for every float; Metal uses
// it for every argument, having no double).
KILN_INLINE void kiln_sincos_reduce(float x, double& r, int& q) {
  const double xd = (double)x;
  const double qd = km::rint(xd * 0.63661977236758134308);
  double rd = KILN_FMA(-qd, 1.5707963267948966, xd);
  rd = KILN_FMA(-qd, 6.123233995736766e-17, rd);
  r = rd;
  q = (int)(int64_t)qd;
}
KILN_INLINE double kiln_sin_poly(double r) {
  const double z = r * r;
  double p = -2.505210838544172e-08;
  p = KILN_FMA(p, z, 2.755731922398589e-06);
  p = KILN_FMA(p, z, -1.984126984126984e-04);
  p = KILN_FMA(p, z, 8.333333333333333e-03);
  p = KILN_FMA(p, z, -1.666666666666667e-01);
  return KILN_FMA(p * z, r, r);
}
KILN_INLINE double kiln_cos_poly(double r) {
  const double z = r * r;
  double p = 2.08767569878681e-09;
  p = KILN_FMA(p, z, -2.755731922398589e-07);
  p = KILN_FMA(p, z, 2.48015873015873e-05);
  p = KILN_FMA(p, z, -1.388888888888889e-03);
  p = KILN_FMA(p, z, 4.166666666666667e-02);
  p = KILN_FMA(p, z, -0.5);
  return KILN_FMA(p, z, 1.0);
}
KILN_INLINE float kiln_sin(float x) {
  if (__builtin_expect(!(km::fabs(x) < 1048576.0f), 0)) {
    return kiln_sin_any(x);
  }
  double r;
  int q;
  kiln_sincos_reduce(x, r, q);
  const double s = kiln_sin_poly(r);
  const double c = kiln_cos_poly(r);
  const double v = (q & 1) ? c : s;
  const float out = (float)((q & 2) ? -v : v);
  return x == 0.0f ? x : out;
}
KILN_INLINE float kiln_cos(float x) {
  if (__builtin_expect(!(km::fabs(x) < 1048576.0f), 0)) {
    return kiln_cos_any(x);
  }
  double r;
  int q;
  kiln_sincos_reduce(x, r, q);
  const double s = kiln_sin_poly(r);
  const double c = kiln_cos_poly(r);
  const double v = (q & 1) ? s : c;
  return (float)(((q + 1) & 2) ? -v : v);
}
KILN_INLINE double kiln_sin(double x) { return km::sin(x); }
KILN_INLINE double kiln_cos(double x) { return km::cos(x); }

// ---- the rest: libm (correct, scalar) ------------------------------------------------------------
#define KILN_LIBM1(name, fn)                                  \
  KILN_INLINE float name(float x) { return km::fn(x); }     \
  KILN_INLINE double name(double x) { return km::fn(x); }
KILN_LIBM1(kiln_log2, log2)
KILN_LIBM1(kiln_log10, log10)
KILN_LIBM1(kiln_tan, tan)
KILN_LIBM1(kiln_arcsin, asin)
KILN_LIBM1(kiln_arccos, acos)
KILN_LIBM1(kiln_arctan, atan)
KILN_LIBM1(kiln_sinh, sinh)
KILN_LIBM1(kiln_cosh, cosh)
KILN_LIBM1(kiln_arcsinh, asinh)
KILN_LIBM1(kiln_arccosh, acosh)
KILN_LIBM1(kiln_arctanh, atanh)
template <class T>
KILN_INLINE T kiln_arctan2(T y, T x) { return km::atan2(y, x); }
// (float32 logaddexp is kiln_math.h's, shared with Metal.)
KILN_INLINE double kiln_logaddexp(double x, double y) {
  if (x == y) {
    return x + 0.693147180559945309417232121458176568;
  }
  const double d = x - y;
  if (d > 0) {
    return x + km::log1p(km::exp(-d));
  }
  if (d <= 0) {
    return y + km::log1p(km::exp(d));
  }
  return d;
}
